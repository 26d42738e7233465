"""Reads an MCAP file with Foxglove's Python library (PyPI `mcap`), independently of the
server's own reader, and prints what a user of the file would check, as JSON.

    mcap_read.py FILE          indexed read (a finished file): summary, chunks, metadata
    mcap_read.py FILE --stream record by record (a file a crash cut short), up to its end
"""
import json
import sys

from mcap.reader import make_reader
from mcap.records import Channel, Message, Metadata, Schema
from mcap.stream_reader import StreamReader


def message(schemas, channels, ch_id, m):
    channel = channels[ch_id]
    schema = schemas.get(channel.schema_id)
    return {
        "topic": channel.topic,
        "encoding": channel.message_encoding,
        "schema": schema.name if schema else None,
        "schema_encoding": schema.encoding if schema else None,
        "sequence": m.sequence,
        "log_time": m.log_time,
        "publish_time": m.publish_time,
        "data": json.loads(m.data),
    }


def indexed(path):
    with open(path, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
        out = {
            "profile": header.profile,
            "library": header.library,
            "chunks": [c.compression for c in summary.chunk_indexes],
            "schemas": {s.name: json.loads(s.data) for s in summary.schemas.values()},
            "metadata": {m.name: dict(m.metadata) for m in reader.iter_metadata()},
            "message_count": summary.statistics.message_count,
            "messages": [],
        }
        for schema, channel, m in reader.iter_messages(log_time_order=True):
            out["messages"].append(
                message({schema.id: schema} if schema else {}, {channel.id: channel}, channel.id, m)
            )
    return out


def streamed(path):
    schemas, channels, messages, metadata = {}, {}, [], {}
    truncated = None
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    messages.append(message(schemas, channels, record.channel_id, record))
                elif isinstance(record, Metadata):
                    metadata[record.name] = dict(record.metadata)
        except Exception as e:  # the cut: everything before it was read
            truncated = f"{type(e).__name__}: {e}"
    return {"messages": messages, "metadata": metadata, "truncated": truncated}


if __name__ == "__main__":
    path = sys.argv[1]
    result = streamed(path) if "--stream" in sys.argv[2:] else indexed(path)
    json.dump(result, sys.stdout)

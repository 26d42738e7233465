//! A minimal ONNX protobuf rewrite: give a model's 4-D inputs and outputs symbolic batch,
//! height and width, so ONNX Runtime accepts any frame size.
//!
//! CenterFace's graph declares a fixed `[10, 3, 32, 32]` input although every layer is
//! size-agnostic. We rewrite the graph's declared shapes once, in memory, at load time:
//! only the `dim` entries of `graph.input` (those that are not weights) and `graph.output`
//! change; every other byte is copied as it is. The wire format is protobuf's: tagged
//! fields, varints, length-delimited submessages.
//!
//! Field numbers used (from onnx.proto): ModelProto.graph = 7; GraphProto.initializer = 5,
//! input = 11, output = 12; TensorProto.name = 8; ValueInfoProto.name = 1, type = 2;
//! TypeProto.tensor_type = 1; TypeProto.Tensor.shape = 2; TensorShapeProto.dim = 1;
//! Dimension.dim_value = 1, dim_param = 2.

use std::collections::HashSet;

/// Why a model file could not be rewritten.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not a readable ONNX model: {0}")]
pub struct GraphError(String);

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// One field of a message: its number, wire type and the bytes of its value (for
/// length-delimited fields, without the length prefix).
struct Field<'a> {
    number: u64,
    wire: u8,
    /// The whole encoded field (tag, length, value), copied as is when unchanged.
    raw: &'a [u8],
    /// The value bytes of a length-delimited field.
    payload: &'a [u8],
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64, GraphError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or_else(|| GraphError("truncated varint".into()))?;
        *at += 1;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(GraphError("varint longer than 10 bytes".into()))
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn fields(bytes: &[u8]) -> Result<Vec<Field<'_>>, GraphError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let tag = read_varint(bytes, &mut at)?;
        let (number, wire) = (tag >> 3, (tag & 7) as u8);
        let mut payload: &[u8] = &[];
        match wire {
            WIRE_VARINT => {
                read_varint(bytes, &mut at)?;
            }
            WIRE_I64 => at += 8,
            WIRE_I32 => at += 4,
            WIRE_LEN => {
                let len = read_varint(bytes, &mut at)? as usize;
                let end = at
                    .checked_add(len)
                    .filter(|end| *end <= bytes.len())
                    .ok_or_else(|| GraphError(format!("field {number} runs past the end")))?;
                payload = &bytes[at..end];
                at = end;
            }
            other => return Err(GraphError(format!("unsupported wire type {other}"))),
        }
        if at > bytes.len() {
            return Err(GraphError(format!("field {number} runs past the end")));
        }
        out.push(Field {
            number,
            wire,
            raw: &bytes[start..at],
            payload,
        });
    }
    Ok(out)
}

fn write_len_field(number: u64, payload: &[u8], out: &mut Vec<u8>) {
    write_varint((number << 3) | u64::from(WIRE_LEN), out);
    write_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Rewrites each length-delimited field `number` of `message` with `edit`, keeping the rest.
fn rewrite(
    message: &[u8],
    mut edit: impl FnMut(&Field<'_>) -> Result<Option<Vec<u8>>, GraphError>,
) -> Result<Vec<u8>, GraphError> {
    let mut out = Vec::with_capacity(message.len() + 64);
    for field in fields(message)? {
        match edit(&field)? {
            Some(payload) => write_len_field(field.number, &payload, &mut out),
            None => out.extend_from_slice(field.raw),
        }
    }
    Ok(out)
}

fn string_field(message: &[u8], number: u64) -> Result<Option<String>, GraphError> {
    Ok(fields(message)?
        .into_iter()
        .find(|f| f.number == number && f.wire == WIRE_LEN)
        .map(|f| String::from_utf8_lossy(f.payload).into_owned()))
}

/// Replaces the dims of a 4-D tensor shape at positions 0, 2 and 3 with `names`.
fn dynamic_shape(shape: &[u8], names: [&str; 3]) -> Result<Option<Vec<u8>>, GraphError> {
    let dims = fields(shape)?
        .into_iter()
        .filter(|f| f.number == 1 && f.wire == WIRE_LEN)
        .count();
    if dims != 4 {
        return Ok(None);
    }
    let mut index = 0;
    let out = rewrite(shape, |field| {
        if field.number != 1 || field.wire != WIRE_LEN {
            return Ok(None);
        }
        let position = index;
        index += 1;
        let name = match position {
            0 => names[0],
            2 => names[1],
            3 => names[2],
            _ => return Ok(None),
        };
        let mut dim = Vec::new();
        write_len_field(2, name.as_bytes(), &mut dim);
        Ok(Some(dim))
    })?;
    Ok(Some(out))
}

/// Makes a value info's 4-D tensor shape symbolic; other values are left as they are.
fn dynamic_value_info(info: &[u8], names: [&str; 3]) -> Result<Vec<u8>, GraphError> {
    rewrite(info, |ty| {
        if ty.number != 2 || ty.wire != WIRE_LEN {
            return Ok(None);
        }
        rewrite(ty.payload, |tensor| {
            if tensor.number != 1 || tensor.wire != WIRE_LEN {
                return Ok(None);
            }
            rewrite(tensor.payload, |shape| {
                if shape.number != 2 || shape.wire != WIRE_LEN {
                    return Ok(None);
                }
                dynamic_shape(shape.payload, names)
            })
            .map(Some)
        })
        .map(Some)
    })
}

/// The model with symbolic batch/height/width on its 4-D graph inputs and outputs.
pub fn make_spatial_dims_dynamic(model: &[u8]) -> Result<Vec<u8>, GraphError> {
    let mut found_graph = false;
    let out = rewrite(model, |field| {
        if field.number != 7 || field.wire != WIRE_LEN {
            return Ok(None);
        }
        found_graph = true;
        let graph = field.payload;
        // Old exporters list every weight among the inputs too; those keep their shapes.
        let mut weights = HashSet::new();
        for f in fields(graph)? {
            if f.number == 5 && f.wire == WIRE_LEN {
                if let Some(name) = string_field(f.payload, 8)? {
                    weights.insert(name);
                }
            }
        }
        rewrite(graph, |f| match f.number {
            11 if f.wire == WIRE_LEN => {
                let name = string_field(f.payload, 1)?.unwrap_or_default();
                if weights.contains(&name) {
                    return Ok(None);
                }
                dynamic_value_info(f.payload, ["batch", "height", "width"]).map(Some)
            }
            12 if f.wire == WIRE_LEN => {
                dynamic_value_info(f.payload, ["batch", "out_height", "out_width"]).map(Some)
            }
            _ => Ok(None),
        })
        .map(Some)
    })?;
    if !found_graph {
        return Err(GraphError("the file has no graph".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(fields: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, payload) in fields {
            write_len_field(*n, payload, &mut out);
        }
        out
    }

    fn dim_value(v: u64) -> Vec<u8> {
        let mut d = Vec::new();
        write_varint(1 << 3, &mut d);
        write_varint(v, &mut d);
        d
    }

    fn value_info(name: &str, dims: &[u64]) -> Vec<u8> {
        let shape = msg(&dims.iter().map(|d| (1, dim_value(*d))).collect::<Vec<_>>());
        let mut tensor = Vec::new();
        write_varint(1 << 3, &mut tensor); // elem_type = 1 (float)
        write_varint(1, &mut tensor);
        write_len_field(2, &shape, &mut tensor);
        msg(&[(1, name.as_bytes().to_vec()), (2, msg(&[(1, tensor)]))])
    }

    fn dims_of(info: &[u8]) -> Vec<String> {
        let ty = fields(info)
            .unwrap()
            .into_iter()
            .find(|f| f.number == 2)
            .unwrap();
        let tensor = fields(ty.payload)
            .unwrap()
            .into_iter()
            .find(|f| f.number == 1)
            .unwrap();
        let shape = fields(tensor.payload)
            .unwrap()
            .into_iter()
            .find(|f| f.number == 2)
            .unwrap();
        fields(shape.payload)
            .unwrap()
            .into_iter()
            .map(|dim| {
                let inner = fields(dim.payload).unwrap();
                let f = &inner[0];
                if f.number == 2 {
                    String::from_utf8_lossy(f.payload).into_owned()
                } else {
                    let mut at = 0;
                    let mut raw = f.raw;
                    read_varint(raw, &mut at).unwrap();
                    raw = &raw[at..];
                    at = 0;
                    read_varint(raw, &mut at).unwrap().to_string()
                }
            })
            .collect()
    }

    #[test]
    fn rewrites_inputs_and_outputs_but_not_weights() {
        let weight = msg(&[(8, b"w".to_vec())]);
        let graph = msg(&[
            (5, weight),
            (11, value_info("input.1", &[10, 3, 32, 32])),
            (11, value_info("w", &[16, 3, 3, 3])),
            (12, value_info("537", &[10, 1, 8, 8])),
        ]);
        let mut model = Vec::new();
        write_varint(1 << 3, &mut model); // ir_version
        write_varint(7, &mut model);
        write_len_field(7, &graph, &mut model);

        let rewritten = make_spatial_dims_dynamic(&model).expect("rewrite");
        let graph = fields(&rewritten)
            .unwrap()
            .into_iter()
            .find(|f| f.number == 7)
            .unwrap();
        let parts = fields(graph.payload).unwrap();
        let infos: Vec<_> = parts
            .iter()
            .filter(|f| f.number == 11 || f.number == 12)
            .collect();
        assert_eq!(dims_of(infos[0].payload), ["batch", "3", "height", "width"]);
        assert_eq!(
            dims_of(infos[1].payload),
            ["16", "3", "3", "3"],
            "weights untouched"
        );
        assert_eq!(
            dims_of(infos[2].payload),
            ["batch", "1", "out_height", "out_width"]
        );
        assert_eq!(
            &rewritten[..2],
            &model[..2],
            "other fields copied as they are"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(make_spatial_dims_dynamic(b"\xff\xff\xff").is_err());
        assert!(make_spatial_dims_dynamic(&[0x3a, 0x7f, 0x01]).is_err());
        assert!(make_spatial_dims_dynamic(b"").is_err());
    }
}

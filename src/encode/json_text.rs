//! JSON values written back out as JSON text, already escaped for a line-protocol string
//! field (so `"` becomes `\"` and `\` becomes `\\` on top of JSON's own escaping).
//!
//! The text is compact (no spaces) and keeps every string, number and key order; readers parse
//! it, so it must be the same JSON value as the input, not the same bytes.

use bytes::{BufMut, BytesMut};
use simd_json::{Node, StaticNode};

use super::scan::{find, has_byte, has_less};
use crate::decode::Json;

/// Renames object keys while writing (used for alarm `sub_alarms`).
pub(super) type Rename = fn(&str) -> &str;

/// Appends `v` as JSON text, escaped for the inside of a string field.
pub(super) fn write(out: &mut BytesMut, v: Json<'_, '_>, rename: Option<Rename>) {
    match v.node() {
        Node::String(s) => string(out, s),
        Node::Static(s) => scalar(out, s),
        Node::Object { .. } => {
            out.put_u8(b'{');
            for (i, (k, val)) in v.entries().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                string(out, rename.map_or(k, |r| r(k)));
                out.put_u8(b':');
                write(out, val, rename);
            }
            out.put_u8(b'}');
        }
        Node::Array { .. } => {
            out.put_u8(b'[');
            for (i, val) in v.elements().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                write(out, val, rename);
            }
            out.put_u8(b']');
        }
    }
}

fn scalar(out: &mut BytesMut, s: StaticNode) {
    match s {
        StaticNode::Null => out.extend_from_slice(b"null"),
        StaticNode::Bool(true) => out.extend_from_slice(b"true"),
        StaticNode::Bool(false) => out.extend_from_slice(b"false"),
        StaticNode::I64(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        StaticNode::U64(u) => out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
        // The parser only produces finite floats; `null` keeps the text valid JSON if that
        // ever changes.
        StaticNode::F64(f) if f.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes())
        }
        StaticNode::F64(_) => out.extend_from_slice(b"null"),
    }
}

/// A JSON string literal, escaped twice: JSON escapes, then string-field escapes.
fn string(out: &mut BytesMut, s: &str) {
    out.extend_from_slice(b"\\\"");
    let bytes = s.as_bytes();
    let special = |x| has_less(x, 0x20) | has_byte(x, b'"') | has_byte(x, b'\\');
    let mut run_start = 0;
    let mut next = 0;
    loop {
        // The next byte to escape; the run before it is copied as it is.
        let i = next + bytes.get(next..).map_or(0, |rest| find(rest, special));
        let Some(&b) = bytes.get(i) else { break };
        next = i + 1;
        let esc: &[u8] = match b {
            // JSON `\"` → field `\\\"`; JSON `\\` → field `\\\\`.
            b'"' => b"\\\\\\\"",
            b'\\' => b"\\\\\\\\",
            b'\n' => b"\\\\n",
            b'\r' => b"\\\\r",
            b'\t' => b"\\\\t",
            0x08 => b"\\\\b",
            0x0c => b"\\\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        run_start = i + 1;
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\\\u00");
            out.put_u8(HEX[(b >> 4) as usize]);
            out.put_u8(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.extend_from_slice(b"\\\"");
}

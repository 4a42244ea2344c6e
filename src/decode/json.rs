//! A borrowed view of one JSON value on simd-json's tape.
//!
//! simd-json's own tape `Value` offers keyed lookup that rescans the object each time; the
//! decoders here make one pass over each object instead, and the encoder walks nested values
//! to write them back out as JSON text. Both need only this small, copyable cursor.

use simd_json::{Node, StaticNode};

/// One JSON value: its node on the tape followed by all of its descendants.
#[derive(Clone, Copy, Debug)]
pub struct Json<'t, 'a>(&'t [Node<'a>]);

impl<'t, 'a> Json<'t, 'a> {
    /// The value starting at `nodes[0]`. `nodes` must be non-empty (checked by the caller).
    pub(crate) fn new(nodes: &'t [Node<'a>]) -> Self {
        Self(&nodes[..span(nodes)])
    }

    /// The value's own node.
    pub fn node(&self) -> Node<'a> {
        self.0[0]
    }

    pub fn is_null(&self) -> bool {
        matches!(self.0[0], Node::Static(StaticNode::Null))
    }

    pub fn is_object(&self) -> bool {
        matches!(self.0[0], Node::Object { .. })
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self.0[0] {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// True for `{}` and `[]`.
    pub fn is_empty_container(&self) -> bool {
        matches!(
            self.0[0],
            Node::Object { len: 0, .. } | Node::Array { len: 0, .. }
        )
    }

    /// Key/value pairs of an object in document order (duplicates included); nothing for any
    /// other type.
    pub fn entries(&self) -> Entries<'t, 'a> {
        match self.0[0] {
            Node::Object { len, .. } => Entries {
                rest: &self.0[1..],
                left: len,
            },
            _ => Entries { rest: &[], left: 0 },
        }
    }

    /// Elements of an array in order; nothing for any other type.
    pub fn elements(&self) -> Elements<'t, 'a> {
        match self.0[0] {
            Node::Array { len, .. } => Elements {
                rest: &self.0[1..],
                left: len,
            },
            _ => Elements { rest: &[], left: 0 },
        }
    }
}

/// Number of tape nodes the value at `nodes[0]` occupies.
fn span(nodes: &[Node<'_>]) -> usize {
    match nodes[0] {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// Iterator over an object's entries.
pub struct Entries<'t, 'a> {
    rest: &'t [Node<'a>],
    left: usize,
}

impl<'t, 'a> Iterator for Entries<'t, 'a> {
    type Item = (&'a str, Json<'t, 'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.rest.len() < 2 {
            return None;
        }
        self.left -= 1;
        // simd-json guarantees object keys are strings.
        let key = match self.rest[0] {
            Node::String(k) => k,
            _ => return None,
        };
        let value = Json::new(&self.rest[1..]);
        self.rest = &self.rest[1 + value.0.len()..];
        Some((key, value))
    }
}

/// Iterator over an array's elements.
pub struct Elements<'t, 'a> {
    rest: &'t [Node<'a>],
    left: usize,
}

impl<'t, 'a> Iterator for Elements<'t, 'a> {
    type Item = Json<'t, 'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.rest.is_empty() {
            return None;
        }
        self.left -= 1;
        let value = Json::new(self.rest);
        self.rest = &self.rest[value.0.len()..];
        Some(value)
    }
}

//! The bytes that delimit and escape InfluxDB line protocol, named once: the encoder writes
//! lines with them and the writer (`sink`) reads lines back with them.
//!
//! Owns nothing but these names; the rules that use them are in `encode` (see its header).
//! Must never hold logic beyond a byte's membership in an escape set, nor change what the hot
//! path compiles to: everything here is a `const` or an always-inlined `const fn`.

/// Ends a line (and may stand as it is inside a string field).
pub const LINE_END: u8 = b'\n';
/// A carriage return: a line break inside an identifier.
pub const CARRIAGE_RETURN: u8 = b'\r';
/// Between the series key and the fields, and between the fields and the timestamp.
pub const SPACE: u8 = b' ';
/// Before each tag, and between fields.
pub const COMMA: u8 = b',';
/// Between a tag's or a field's key and its value.
pub const EQUALS: u8 = b'=';
/// Around a string field's value.
pub const QUOTE: u8 = b'"';
/// Escapes the byte after it.
pub const BACKSLASH: u8 = b'\\';

/// Whether `c` is escaped with a backslash in an identifier (measurement, tag key, tag value,
/// field key) in the v1 dialect: `,`, `=` and space. A backslash is written as it is.
#[inline(always)]
pub const fn escaped_in_ident(c: u8) -> bool {
    matches!(c, COMMA | EQUALS | SPACE)
}

/// Whether `c` is escaped with a backslash in an identifier in the v3 dialect: the v1 set and
/// the backslash itself.
#[inline(always)]
pub const fn escaped_in_ident_v3(c: u8) -> bool {
    matches!(c, COMMA | EQUALS | SPACE | BACKSLASH)
}

/// The bytes escaped with a backslash in a string field's value: `"` and `\`.
pub const STRING_ESCAPED: [u8; 2] = [QUOTE, BACKSLASH];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escape_sets_are_the_delimiters() {
        let v1: Vec<u8> = (0..=255).filter(|&c| escaped_in_ident(c)).collect();
        assert_eq!(v1, b" ,=");
        let v3: Vec<u8> = (0..=255).filter(|&c| escaped_in_ident_v3(c)).collect();
        assert_eq!(v3, b" ,=\\");
        assert_eq!(&STRING_ESCAPED, b"\"\\");
    }
}

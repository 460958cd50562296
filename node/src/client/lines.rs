//! Reading newline-terminated lines with a size limit, so that a client cannot make the
//! node buffer an unbounded line.

use std::io::{self, BufRead, Read};

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A line is in the buffer, without its newline (or the final bytes before end of file).
    Line,
    /// End of file with nothing pending.
    Eof,
    /// The line exceeds the limit; the buffer holds its first bytes only.
    TooLong,
}

/// Reads one line into `line` (cleared first), never buffering more than
/// `max_bytes + 1` bytes of it. A trailing `\r` is kept; JSON parsing ignores it.
pub fn read_line_limited(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max_bytes: usize,
) -> io::Result<LineRead> {
    line.clear();
    let read = Read::take(reader, max_bytes as u64 + 1).read_until(b'\n', line)?;
    if read == 0 {
        return Ok(LineRead::Eof);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(LineRead::Line);
    }
    if line.len() > max_bytes {
        return Ok(LineRead::TooLong);
    }
    Ok(LineRead::Line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_up_to_the_limit_pass_and_longer_ones_do_not() {
        let mut input = io::Cursor::new(b"abcd\nabcde\nab".to_vec());
        let mut line = Vec::new();
        assert_eq!(
            read_line_limited(&mut input, &mut line, 4).unwrap(),
            LineRead::Line
        );
        assert_eq!(line, b"abcd");
        assert_eq!(
            read_line_limited(&mut input, &mut line, 4).unwrap(),
            LineRead::TooLong
        );
        let mut input = io::Cursor::new(b"ab".to_vec());
        assert_eq!(
            read_line_limited(&mut input, &mut line, 4).unwrap(),
            LineRead::Line
        );
        assert_eq!(line, b"ab");
        assert_eq!(
            read_line_limited(&mut input, &mut line, 4).unwrap(),
            LineRead::Eof
        );
    }
}

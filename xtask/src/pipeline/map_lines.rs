//! A reader that passes another reader's text on line by line, each line rewritten (or
//! dropped) by a function as it streams: how `perf script`'s output is adjusted on its way
//! into inferno's folder without ever being held whole.

use std::io::{BufRead, Read};

/// The lines of `inner`, each replaced by what `rewrite` returns for it (an empty string
/// drops it). A line is passed with its newline.
pub struct MapLines<R, F> {
    inner: R,
    rewrite: F,
    line: String,
    pos: usize,
}

impl<R: BufRead, F: FnMut(String) -> String> MapLines<R, F> {
    pub fn new(inner: R, rewrite: F) -> Self {
        MapLines {
            inner,
            rewrite,
            line: String::new(),
            pos: 0,
        }
    }
}

impl<R: BufRead, F: FnMut(String) -> String> Read for MapLines<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead, F: FnMut(String) -> String> BufRead for MapLines<R, F> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.line.len() {
            let mut raw = String::new();
            if self.inner.read_line(&mut raw)? == 0 {
                self.line.clear();
                self.pos = 0;
                break;
            }
            self.line = (self.rewrite)(raw);
            self.pos = 0;
        }
        Ok(&self.line.as_bytes()[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_rewritten_or_dropped_as_they_stream() {
        let mut out = String::new();
        MapLines::new("keep\ndrop\nshout\n".as_bytes(), |l: String| {
            match l.trim_end() {
                "drop" => String::new(),
                "shout" => "SHOUT\n".to_owned(),
                _ => l,
            }
        })
        .read_to_string(&mut out)
        .expect("reads");
        assert_eq!(out, "keep\nSHOUT\n");
    }
}

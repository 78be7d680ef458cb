//! A screen in memory for indicatif to draw on, so one frame of `hb watch` can be printed as
//! plain lines where there is no terminal (a pipe, a file, `--once`).

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use indicatif::TermLike;

/// Rows of characters and a cursor; wraps at `width` as a terminal does. Clones share the
/// screen (indicatif takes one, the caller reads another).
#[derive(Debug, Clone)]
pub(crate) struct Screen {
    width: u16,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
}

impl State {
    fn put(&mut self, c: char, width: usize) {
        match c {
            '\r' => self.col = 0,
            '\n' => {
                self.row += 1;
                self.col = 0;
            }
            c => {
                if self.col >= width {
                    self.row += 1;
                    self.col = 0;
                }
                let col = self.col;
                let row = self.line();
                if col < row.len() {
                    row[col] = c;
                } else {
                    row.resize(col, ' ');
                    row.push(c);
                }
                self.col += 1;
            }
        }
    }

    fn line(&mut self) -> &mut Vec<char> {
        if self.rows.len() <= self.row {
            self.rows.resize_with(self.row + 1, Vec::new);
        }
        &mut self.rows[self.row]
    }
}

impl Screen {
    pub(crate) fn new(width: u16) -> Self {
        Screen {
            width: width.max(20),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What is on the screen, trailing blanks trimmed.
    pub(crate) fn contents(&self) -> String {
        self.with(|s| {
            let mut out = String::new();
            for row in &s.rows {
                let line: String = row.iter().collect();
                let line = line.trim_end();
                out.push_str(line);
                out.push('\n');
            }
            while out.ends_with("\n\n") {
                out.pop();
            }
            if out == "\n" {
                out.clear();
            }
            out
        })
    }
}

impl TermLike for Screen {
    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        u16::MAX
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.with(|s| s.row = s.row.saturating_sub(n));
        Ok(())
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.with(|s| s.row = s.row.saturating_add(n));
        Ok(())
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        let width = usize::from(self.width);
        self.with(|s| s.col = s.col.saturating_add(n).min(width));
        Ok(())
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.with(|s| s.col = s.col.saturating_sub(n));
        Ok(())
    }

    fn write_line(&self, line: &str) -> io::Result<()> {
        let width = usize::from(self.width);
        self.with(|s| {
            for c in line.chars() {
                s.put(c, width);
            }
            s.put('\n', width);
        });
        Ok(())
    }

    fn write_str(&self, text: &str) -> io::Result<()> {
        let width = usize::from(self.width);
        self.with(|s| {
            for c in text.chars() {
                s.put(c, width);
            }
        });
        Ok(())
    }

    fn clear_line(&self) -> io::Result<()> {
        self.with(|s| {
            s.line().clear();
            s.col = 0;
        });
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redraws_overwrite_and_lines_wrap_at_the_width() {
        let s = Screen::new(20);
        s.write_str("first draw").unwrap();
        s.clear_line().unwrap();
        s.write_str("second").unwrap();
        s.write_str(&" ".repeat(14)).unwrap();
        s.write_str("next row").unwrap();
        assert_eq!(s.contents(), "second\nnext row\n");
        s.move_cursor_up(1).unwrap();
        s.clear_line().unwrap();
        s.write_str("third").unwrap();
        assert_eq!(s.contents(), "third\nnext row\n");
    }
}

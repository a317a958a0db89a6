//! Plain-text tables for people: columns padded to their widest cell, numbers right-aligned.

/// A table built row by row and rendered with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Indexes of rows after which a rule is drawn.
    rules: Vec<usize>,
    /// Every cell flush left (a field/value listing, where a number among words reads badly
    /// pushed right).
    flush_left: bool,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The same table with every cell flush left.
    pub fn flush_left(mut self) -> Self {
        self.flush_left = true;
        self
    }

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Draws a rule under the last row added.
    pub fn rule(&mut self) {
        if !self.rows.is_empty() {
            self.rules.push(self.rows.len() - 1);
        }
    }

    pub fn render(&self) -> String {
        let columns = self
            .header
            .len()
            .max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        // A missing value (`-`) sits where the column's values do: right in a column of
        // numbers, left in one of words.
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .any(|c| c != "-" && looks_numeric(c))
            })
            .collect();
        let total: usize = widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1);
        let mut out = String::new();
        let line = |out: &mut String, row: &[String]| {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    text.push_str("  ");
                }
                let right = if cell == "-" {
                    numeric[i]
                } else {
                    looks_numeric(cell)
                };
                if !self.flush_left && right {
                    text.push_str(&format!("{cell:>width$}"));
                } else {
                    text.push_str(&format!("{cell:<width$}"));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, &self.header);
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for (i, row) in self.rows.iter().enumerate() {
            line(&mut out, row);
            if self.rules.contains(&i) {
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        out
    }
}

fn looks_numeric(cell: &str) -> bool {
    let trimmed = cell
        .trim_start_matches(['$', '-', '+'])
        .trim_end_matches(['%', 'x', 's']);
    !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | '.'))
}

/// "1 cluster", "3 clusters", "2,181 jobs".
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", thousands(n))
    }
}

/// Formats an integer with thousands separators: 100352 → "100,352".
pub fn thousands(n: u64) -> String {
    switchyard_core::grouped(n)
}

/// Thousands separators in a string of digits (any length: an f64's integer part can pass
/// 64 bits).
fn group_digits(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats a float with a fixed number of decimals and thousands separators in the integer part.
pub fn number(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let text = format!("{:.*}", decimals, x.abs());
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let int = group_digits(int);
    let sign = if x < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    match frac {
        Some(f) => format!("{sign}{int}.{f}"),
        None => format!("{sign}{int}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(100_352), "100,352");
        assert_eq!(number(1234567.891, 2), "1,234,567.89");
        assert_eq!(number(-0.001, 1), "0.0");
        assert_eq!(number(-1500.0, 0), "-1,500");
        // Past 64 bits the digits are still all there.
        assert_eq!(number(1e20, 0), "100,000,000,000,000,000,000");
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(["name", "count"]);
        t.row(["a", "1"]);
        t.row(["longer", "1,000"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name    count");
        assert_eq!(lines[2], "a           1");
        assert_eq!(lines[3], "longer  1,000");
    }

    #[test]
    fn a_missing_value_sits_with_its_columns_values() {
        let mut t = Table::new(["name", "count"]);
        t.row(["a-long-name", "1,000"]);
        t.row(["-", "-"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[3], "-                -");
    }

    #[test]
    fn a_flush_left_table_pushes_no_number_right() {
        let mut t = Table::new(["FIELD", "VALUE"]).flush_left();
        t.row(["state", "running"]);
        t.row(["restarts", "0"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "state     running");
        assert_eq!(lines[3], "restarts  0");
    }
}

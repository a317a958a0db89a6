//! Shared machinery of the CSV readers: header lookup, rows that know their file, line and row
//! number, and field parsers that produce errors naming the column.

use csv::StringRecord;

use super::{LoadOptions, TraceError};

/// A delimited file read into memory: its header and data rows with their positions.
pub(crate) struct Table<'a> {
    pub file: &'a str,
    pub header: Vec<String>,
    rows: Vec<(u64, StringRecord)>,
}

impl<'a> Table<'a> {
    /// Reads `text` (comma-separated, header on the first non-empty line). Fields are trimmed;
    /// empty lines are ignored; rows may have any number of fields (checked per row).
    pub fn read(text: &str, file: &'a str) -> Result<Self, TraceError> {
        Self::read_inner(text, file, None)
    }

    /// Like [`Table::read`], and lines starting with `#` are comments.
    pub fn read_with_comments(text: &str, file: &'a str) -> Result<Self, TraceError> {
        Self::read_inner(text, file, Some(b'#'))
    }

    fn read_inner(text: &str, file: &'a str, comment: Option<u8>) -> Result<Self, TraceError> {
        // The reader ends a comment only at an LF: in a file whose lines end in a lone CR, a
        // comment would swallow every line after it. A lone CR is read as the LF it stands
        // for, byte for byte, so offsets and line numbers do not move.
        let text: std::borrow::Cow<'_, str> = if comment.is_some() && has_lone_cr(text) {
            lone_cr_as_lf(text).into()
        } else {
            text.into()
        };
        let text = text.as_ref();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .comment(comment)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        // The reader's own line count skips blank lines and counts a CR LF pair, or a lone CR,
        // differently from an editor; lines are counted here from byte offsets instead.
        let lines = LineIndex::new(text, comment);
        let mut header = Vec::new();
        let mut rows = Vec::new();
        let mut record = StringRecord::new();
        let mut first = true;
        loop {
            let before = reader.position().byte();
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    // Only malformed quoting or I/O can get here; both end the file.
                    let line = lines.record_line(before);
                    return Err(TraceError::file(file, format!("line {line}: {e}")));
                }
            }
            let line = lines.record_line(record.position().map_or(before, |p| p.byte()));
            if record.iter().all(str::is_empty) {
                continue;
            }
            if first {
                header = record
                    .iter()
                    .map(|h| h.trim_start_matches('\u{feff}').to_owned())
                    .collect();
                first = false;
                check_header(&header, file)?;
                continue;
            }
            rows.push((line, record.clone()));
        }
        if header.is_empty() {
            return Err(TraceError::file(file, "empty file: no header line"));
        }
        Ok(Table { file, header, rows })
    }

    /// Index of a header column, or an error naming the missing column.
    pub fn require(&self, name: &str) -> Result<usize, TraceError> {
        self.find(name).ok_or_else(|| {
            TraceError::file(
                self.file,
                format!(
                    "header lacks column \"{name}\" (found: {})",
                    self.header.join(",")
                ),
            )
        })
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }

    /// Converts every row with `convert`, skipping and counting bad rows under `skip_invalid`.
    /// `convert` returns `Ok(None)` for rows the format leaves out by design (also counted).
    pub fn convert<T>(
        &self,
        opts: &LoadOptions,
        mut convert: impl FnMut(&Row<'_>) -> Result<Option<T>, TraceError>,
    ) -> Result<(Vec<T>, usize), TraceError> {
        let mut out = Vec::with_capacity(self.rows.len());
        let mut skipped = 0;
        for (i, (line, record)) in self.rows.iter().enumerate() {
            let row = Row {
                file: self.file,
                line: *line,
                row: i as u64 + 1,
                record,
                header: &self.header,
            };
            match convert(&row) {
                Ok(Some(job)) => out.push(job),
                Ok(None) => skipped += 1,
                Err(_) if opts.skip_invalid => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((out, skipped))
    }
}

/// Refuses a header that names a column twice: a reader would take one copy and silently drop
/// the other.
fn check_header(header: &[String], file: &str) -> Result<(), TraceError> {
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        if let Some(first) = header[..i]
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
        {
            return Err(TraceError::file(
                file,
                format!(
                    "header: column \"{}\" appears twice (columns {} and {})",
                    shorten(name),
                    first + 1,
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `text` has a CR that does not begin a CR LF pair.
fn has_lone_cr(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}

/// `text` with every lone CR replaced by an LF (CR LF pairs kept).
fn lone_cr_as_lf(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() != Some(&'\n') {
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

/// Where each line of a text starts, to turn a byte offset into the line an editor shows.
/// LF, CR LF and a lone CR each end a line.
struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
    comment: Option<u8>,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str, comment: Option<u8>) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        for (i, &b) in bytes.iter().enumerate() {
            let ends_line = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
            if ends_line {
                starts.push(i + 1);
            }
        }
        LineIndex {
            text,
            starts,
            comment,
        }
    }

    /// 1-based line of the byte at `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    /// The line where a record read from `offset` starts: the reader may report the offset of
    /// the previous line's ending (the LF of a CR LF pair), or of blank or comment lines it
    /// skipped on the way, and those are not the record's.
    fn record_line(&self, offset: u64) -> u64 {
        let bytes = self.text.as_bytes();
        let mut offset = usize::try_from(offset).unwrap_or(bytes.len());
        while matches!(bytes.get(offset), Some(b'\r' | b'\n')) {
            offset += 1;
        }
        let mut line = self.line_of(offset);
        while line < self.starts.len() {
            let start = self.starts[line - 1];
            let end = self.starts.get(line).copied().unwrap_or(self.text.len());
            let content = self.text[start..end].trim_end_matches(['\r', '\n']);
            let skipped = content.trim().is_empty()
                || self
                    .comment
                    .is_some_and(|c| content.as_bytes().first() == Some(&c));
            if !skipped {
                break;
            }
            line += 1;
        }
        line as u64
    }
}

/// One data row and where it came from.
pub(crate) struct Row<'a> {
    pub file: &'a str,
    pub line: u64,
    pub row: u64,
    record: &'a StringRecord,
    header: &'a [String],
}

impl Row<'_> {
    /// An error about `column` in this row.
    pub fn error(&self, column: &str, message: impl Into<String>) -> TraceError {
        TraceError::Row {
            file: self.file.to_owned(),
            line: self.line,
            row: self.row,
            column: column.to_owned(),
            message: message.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.record.len()
    }

    /// Name of column `idx`: the header's, or its 1-based position in a header-less file.
    pub fn column_name(&self, idx: usize) -> String {
        self.header
            .get(idx)
            .cloned()
            .unwrap_or_else(|| format!("{}", idx + 1))
    }

    /// Checks that the row has exactly the header's number of fields.
    pub fn check_width(&self, expected: usize) -> Result<(), TraceError> {
        if self.len() < expected {
            // A quote left open swallows the lines after it into one field.
            let open_quote = if self.record.iter().any(|f| f.contains(['\n', '\r'])) {
                " (a quoted field runs on over the following lines: is a quote left open?)"
            } else if self.record.iter().any(|f| f.contains(',')) {
                // At the end of the file the open quote takes the rest of its line.
                " (a quoted field holds the commas of the fields after it: is a quote left open?)"
            } else {
                ""
            };
            return Err(self.error(
                &self.column_name(self.len()),
                format!(
                    "row has {} field{}, expected {expected}{open_quote}",
                    self.len(),
                    if self.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        if self.len() > expected {
            return Err(self.error(
                &format!("{}", expected + 1),
                format!(
                    "row has {} fields, expected {expected} (extra field \"{}\")",
                    self.len(),
                    shorten(self.get(expected))
                ),
            ));
        }
        Ok(())
    }

    /// Field `idx`, trimmed ("" if the row is short).
    pub fn get(&self, idx: usize) -> &str {
        self.record.get(idx).unwrap_or("")
    }

    /// A required non-empty text field.
    pub fn text(&self, idx: usize) -> Result<&str, TraceError> {
        let v = self.get(idx);
        if v.is_empty() {
            return Err(self.error(&self.column_name(idx), "is empty"));
        }
        Ok(v)
    }

    /// A finite number >= 0.
    pub fn non_negative(&self, idx: usize) -> Result<f64, TraceError> {
        let v = self.get(idx);
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(self.error(
                &self.column_name(idx),
                format!("expected a number >= 0, found \"{}\"", shorten(v)),
            )),
        }
    }

    /// A submission time in seconds: a number from 0 to [`crate::engine::MAX_SUBMIT_S`].
    pub fn submit_time(&self, idx: usize) -> Result<f64, TraceError> {
        let t = self.non_negative(idx)?;
        if t > crate::engine::MAX_SUBMIT_S {
            return Err(self.error(
                &self.column_name(idx),
                format!(
                    "{t:e} s is more than {:e} s (3,000 years) after the trace's zero: times \
                     are seconds (a trace in milliseconds or microseconds needs converting)",
                    crate::engine::MAX_SUBMIT_S
                ),
            ));
        }
        Ok(t)
    }

    /// A finite number > 0.
    pub fn positive(&self, idx: usize) -> Result<f64, TraceError> {
        let v = self.get(idx);
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => Err(self.error(
                &self.column_name(idx),
                format!("expected a number > 0, found \"{}\"", shorten(v)),
            )),
        }
    }

    /// An integer >= 1 that fits in u32 (a whole number written as a float, like "8.0", is
    /// accepted).
    pub fn positive_int(&self, idx: usize) -> Result<u32, TraceError> {
        let v = self.get(idx);
        parse_count(v).filter(|&n| n >= 1).ok_or_else(|| {
            self.error(
                &self.column_name(idx),
                format!("expected a positive integer, found \"{}\"", shorten(v)),
            )
        })
    }

    /// An integer >= 0 that fits in u32.
    pub fn count(&self, idx: usize) -> Result<u32, TraceError> {
        let v = self.get(idx);
        parse_count(v).ok_or_else(|| {
            self.error(
                &self.column_name(idx),
                format!("expected an integer >= 0, found \"{}\"", shorten(v)),
            )
        })
    }
}

/// Parses a non-negative integer that fits in u32, allowing a float spelling of a whole number.
pub(crate) fn parse_count(v: &str) -> Option<u32> {
    if let Ok(n) = v.parse::<u32>() {
        return Some(n);
    }
    let x = v.parse::<f64>().ok()?;
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX) {
        Some(x as u32)
    } else {
        None
    }
}

/// A value quoted in an error message, cut to a readable length, with control characters
/// escaped (a NUL or an escape sequence printed raw would hide or garble the message).
pub(crate) fn shorten(v: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

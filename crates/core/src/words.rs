//! Deserialiser messages in a user's words: a TOML or JSON reader names Rust types ("expected
//! u32") and reports a number past 64 bits as an `i128`; people editing a file need the range.

/// `text` (a whole error message, or its last line) with Rust type names and the parser's
/// 128-bit detour replaced by what the value must be. Only the reader's own words change: the
/// user's text it quotes — a source line (`2 | key = …`), a name in backticks or a string in
/// double quotes — is left as written, whatever it says.
pub fn plain_type_words(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            if is_source_excerpt(line) {
                line.to_owned()
            } else {
                not_whole_in_words(&expected_in_words(&too_large_for_toml(line)))
            }
        })
        .collect()
}

/// A line of a TOML error that shows the file: `2 | key = …`, or the `  |    ^` under it.
fn is_source_excerpt(line: &str) -> bool {
    let rest = line
        .trim_start()
        .trim_start_matches(|c: char| c.is_ascii_digit());
    rest.starts_with(" |") || rest.starts_with('|')
}

/// Whether `at` in `line` is outside every backtick- and double-quoted span before it: there
/// the words are the reader's, not the user's.
fn outside_quotes(line: &str, at: usize) -> bool {
    let before = &line[..at];
    before.matches('`').count().is_multiple_of(2) && before.matches('"').count().is_multiple_of(2)
}

/// `line` with each place `phrase` begins outside the user's quoted text reworded, where
/// `reword(line, at)` takes it: it gives where the reworded span ends and its new words.
fn reword_each(
    line: &str,
    phrase: &str,
    reword: impl Fn(&str, usize) -> Option<(usize, String)>,
) -> String {
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    for (at, _) in line.match_indices(phrase) {
        if at < copied || !outside_quotes(line, at) {
            continue;
        }
        if let Some((end, words)) = reword(line, at) {
            out.push_str(&line[copied..at]);
            out.push_str(&words);
            copied = end;
        }
    }
    out.push_str(&line[copied..]);
    out
}

/// "expected u32" → "expected a whole number from 0 to 4294967295", in the reader's words only.
fn expected_in_words(line: &str) -> String {
    const EXPECTED: &str = "expected ";
    reword_each(line, EXPECTED, |line, at| {
        let word_start = at + EXPECTED.len();
        let after = &line[word_start..];
        // serde names the Rust type it wanted a table for (`expected struct RawTopology`).
        const STRUCT: &str = "struct ";
        if let Some(name) = after.strip_prefix(STRUCT) {
            let name_len = name
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(name.len());
            if name_len > 0 {
                let end = word_start + STRUCT.len() + name_len;
                return Some((end, format!("{EXPECTED}a table of fields")));
            }
        }
        let word_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        let words = type_in_words(&after[..word_len])?;
        Some((word_start + word_len, format!("{EXPECTED}{words}")))
    })
}

/// A reader takes a number with a fraction, an exponent, or (JSON) more digits than 64 bits
/// hold as a float, and says "invalid type: floating point `1e20`" where a whole number was
/// expected: the person wrote a number, so it is the value that is wrong, not its type.
fn not_whole_in_words(line: &str) -> String {
    const START: &str = "invalid type: floating point `";
    const WHOLE: &str = "`, expected a whole number";
    reword_each(line, START, |line, at| {
        let from = at + START.len();
        let end = from + line[from..].find('`')?;
        let number = &line[from..end];
        (!number.is_empty() && line[end..].starts_with(WHOLE))
            .then(|| (end, format!("invalid value: `{number}")))
    })
}

/// TOML integers are 64-bit: the reader takes a longer one as an i128 and says "invalid type:
/// integer `…` as i128, expected …", which reads as if the field wanted another type. The
/// rest of the line (what was expected) goes with it.
fn too_large_for_toml(line: &str) -> String {
    const START: &str = "invalid type: integer `";
    const END: &str = "` as i128";
    // Its end is searched for from where the number begins, and the number checked.
    reword_each(line, START, |line, at| {
        let from = at + START.len();
        let end = from + line[from..].find(END)?;
        let number = &line[from..end];
        let digits = number.strip_prefix('-').unwrap_or(number);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((
            line.trim_end_matches('\n').len(),
            format!(
                "the number {number} is too large: whole numbers in TOML go up to {}",
                i64::MAX
            ),
        ))
    })
}

/// [`plain_type_words`] for a TOML reader's message: TOML hands a date or time to a reader as
/// a map, so "map" alone reads as a puzzle.
pub fn plain_toml_words(text: &str) -> String {
    plain_type_words(text).replace("invalid type: map,", "invalid type: a table or a date,")
}

fn type_in_words(name: &str) -> Option<String> {
    fn whole(min: i128, max: i128) -> Option<String> {
        Some(format!("a whole number from {min} to {max}"))
    }
    match name {
        "u8" => whole(0, u8::MAX.into()),
        "u16" => whole(0, u16::MAX.into()),
        "u32" => whole(0, u32::MAX.into()),
        // TOML writes no integer past i64::MAX: the full range would mislead there.
        "u64" | "usize" => Some("a whole number of 0 or more".to_owned()),
        "i8" => whole(i8::MIN.into(), i8::MAX.into()),
        "i16" => whole(i16::MIN.into(), i16::MAX.into()),
        "i32" => whole(i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => Some("a whole number".to_owned()),
        "f32" | "f64" => Some("a number".to_owned()),
        _ => None,
    }
}

/// A whole number with thousands separators, as people read counts of a fleet's size:
/// 100352 → "100,352".
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{grouped, plain_type_words};

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(100_352), "100,352");
        assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn a_struct_reads_as_a_table() {
        assert_eq!(
            plain_type_words("invalid type: integer `5`, expected struct RawTopology at line 3"),
            "invalid type: integer `5`, expected a table of fields at line 3"
        );
    }

    #[test]
    fn rust_types_read_as_ranges() {
        assert_eq!(
            plain_type_words("invalid value: integer `5000000000`, expected u32"),
            "invalid value: integer `5000000000`, expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain_type_words("invalid type: string \"a\", expected f64"),
            "invalid type: string \"a\", expected a number"
        );
        assert_eq!(
            plain_type_words("invalid type: string \"a\", expected i64 at line 1"),
            "invalid type: string \"a\", expected a whole number at line 1"
        );
        // Only whole words: a type name inside another word stays.
        assert_eq!(
            plain_type_words("expected u32s or expected one of `a`, `b`"),
            "expected u32s or expected one of `a`, `b`"
        );
        assert_eq!(plain_type_words("expected "), "expected ");
        assert_eq!(
            super::plain_toml_words("invalid type: map, expected f64"),
            "invalid type: a table or a date, expected a number"
        );
        // (JSON's maps are objects, not dates.)
        assert_eq!(
            plain_type_words("invalid type: map, expected f64"),
            "invalid type: map, expected a number"
        );
    }

    /// A float where a whole number was expected is a wrong value (JSON reads a whole number
    /// past 64 bits as a float too); a float where something else was expected is left.
    #[test]
    fn a_float_for_a_whole_number_is_a_wrong_value() {
        assert_eq!(
            plain_type_words("invalid type: floating point `1e20`, expected u32 at line 1"),
            "invalid value: `1e20`, expected a whole number from 0 to 4294967295 at line 1"
        );
        assert_eq!(
            plain_type_words("invalid type: floating point `1.5`, expected a string"),
            "invalid type: floating point `1.5`, expected a string"
        );
        let quoted = "unknown field `invalid type: floating point `1`, expected u32`";
        assert_eq!(plain_type_words(quoted), quoted);
    }

    /// The phrases may come from the user (a key, a value, the quoted source line): the
    /// rewording must never slice across them, nor reword them.
    #[test]
    fn the_phrases_in_the_users_own_text_are_left_alone() {
        for text in [
            "unknown field `invalid type: integer ` as i128`, expected one of `a`",
            "invalid type: integer ` as i128",
            "invalid type: integer `x` as i128",
            "` as i128 then invalid type: integer `",
            "unknown field `expected u32`, expected one of `name`",
            "unknown field `invalid type: integer `-1` as i128é`, expected one of `a`",
            "unknown variant `invalid type: integer `5` as i128`, expected `batch`",
            "invalid type: string \"expected u32\", expected a string",
            "2 | k = 1 # invalid type: integer `5` as i128, expected u32\n",
        ] {
            assert_eq!(plain_type_words(text), text);
        }
        // The reader's own words on the line still change.
        assert_eq!(
            plain_type_words("kind: invalid type: string \"expected u32\", expected u32"),
            "kind: invalid type: string \"expected u32\", expected a whole number from 0 to 4294967295"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_reworded_without_a_panic(
            text in "(invalid type: integer `|invalid type: floating point `|`, expected u32|` as i128|expected u32|-|9|`|\n|.){0,12}"
        ) {
            let _ = plain_type_words(&text);
            let _ = super::plain_toml_words(&text);
        }
    }

    /// The real message is found after a quoted line that holds the phrase first.
    #[test]
    fn the_phrase_quoted_first_does_not_hide_the_message() {
        let text = "1 | k = \"invalid type: integer `\" # 99999999999999999999\ninvalid type: integer `99999999999999999999` as i128, expected x";
        let out = plain_type_words(text);
        assert!(
            out.ends_with("the number 99999999999999999999 is too large: whole numbers in TOML go up to 9223372036854775807"),
            "{out}"
        );
    }

    #[test]
    fn a_number_past_64_bits_is_said_to_be_too_large() {
        let text = "TOML parse error at line 2, column 3\n  |\n2 | n = 99999999999999999999\n  |     ^\ninvalid type: integer `99999999999999999999` as i128, expected any valid TOML value\n";
        assert_eq!(
            plain_type_words(text),
            "TOML parse error at line 2, column 3\n  |\n2 | n = 99999999999999999999\n  |     ^\nthe number 99999999999999999999 is too large: whole numbers in TOML go up to 9223372036854775807\n"
        );
    }
}

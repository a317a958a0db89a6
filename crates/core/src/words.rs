//! Deserialiser messages in a user's words: a TOML or JSON reader names Rust types ("expected
//! u32") and reports a number past 64 bits as an `i128`; people editing a file need the range.

/// `text` (a whole error message, or its last line) with Rust type names and the parser's
/// 128-bit detour replaced by what the value must be.
pub fn plain_type_words(text: &str) -> String {
    let text = too_large_for_toml(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("expected ") {
        let after = &rest[at + "expected ".len()..];
        let word_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        out.push_str(&rest[..at + "expected ".len()]);
        match type_in_words(&after[..word_len]) {
            Some(words) => out.push_str(&words),
            None => out.push_str(&after[..word_len]),
        }
        rest = &after[word_len..];
    }
    out.push_str(rest);
    out
}

/// TOML integers are 64-bit: the reader takes a longer one as an i128 and says "invalid type:
/// integer `…` as i128, expected …", which reads as if the field wanted another type.
fn too_large_for_toml(text: &str) -> String {
    const START: &str = "invalid type: integer `";
    const END: &str = "` as i128";
    // Each place the phrase begins is tried, its end searched for from where the number
    // begins and the number checked: the text around it quotes the user's own file or
    // request, which may hold either phrase anywhere.
    for (start, _) in text.match_indices(START) {
        let from = start + START.len();
        let Some(end) = text[from..].find(END).map(|n| from + n) else {
            continue;
        };
        let number = &text[from..end];
        let digits = number.strip_prefix('-').unwrap_or(number);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let line_end = text[end..].find('\n').map_or(text.len(), |n| end + n);
        return format!(
            "{}the number {number} is too large: whole numbers in TOML go up to {}{}",
            &text[..start],
            i64::MAX,
            &text[line_end..]
        );
    }
    text.to_owned()
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

#[cfg(test)]
mod tests {
    use super::plain_type_words;

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

    /// The phrases may come from the user (a key, a value, the quoted source line): the
    /// rewording must never slice across them.
    #[test]
    fn the_phrases_in_the_users_own_text_are_left_alone() {
        for text in [
            "unknown field `invalid type: integer ` as i128`, expected one of `a`",
            "invalid type: integer ` as i128",
            "invalid type: integer `x` as i128",
            "` as i128 then invalid type: integer `",
        ] {
            assert_eq!(plain_type_words(text), text);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_reworded_without_a_panic(
            text in "(invalid type: integer `|` as i128|expected u32|-|9|`|\n|.){0,12}"
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

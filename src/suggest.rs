//! "Did you mean …?": the known word closest to one that is not known (a config key, a function, an `--arg`).

/// The known word `word` most likely misspells: within a couple of edits (more for long words), or one is the
/// other's start (`profile` for `profiles`). None when nothing is close.
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.trim();
    // Ties go to the word sharing more of its start (`profle` is `profiles`, not `people`).
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), strsim::jaro_winkler(word, k), k))
        .filter(|(d, _, k)| {
            *d <= 2.max(word.len() / 4) || (word.len() >= 3 && (k.starts_with(word) || word.starts_with(k)))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_known_word_or_none() {
        let known = ["profiles", "people", "reason", "deactivate"];
        assert_eq!(closest("profile", known), Some("profiles"));
        assert_eq!(closest("profle", known), Some("profiles"));
        assert_eq!(closest("reasn", known), Some("reason"));
        assert_eq!(closest("colour", known), None);
        assert_eq!(closest("x", known), None);
    }
}

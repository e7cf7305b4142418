//! Line bookkeeping for manifests: splitting YAML text into documents and finding where
//! documents and list items start.
//!
//! The YAML library reports error positions but not where a document or a sequence item
//! begins, so both are found here from the text itself.

/// One YAML document of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The document's text, starting with its `---` marker line if it has one.
    pub text: &'a str,
    /// 1-based line of `text`'s first line in the whole text.
    pub first_line: usize,
    /// 1-based line of the document's first content line (not blank, comment or bare
    /// marker); `first_line` when the document is empty.
    pub content_line: usize,
}

/// `---` (alone or followed by whitespace) at column 0.
fn is_start_marker(line: &str) -> bool {
    marker(line, "---")
}

/// `...` (alone or followed by whitespace) at column 0.
fn is_end_marker(line: &str) -> bool {
    marker(line, "...")
}

fn marker(line: &str, mark: &str) -> bool {
    line.strip_prefix(mark)
        .is_some_and(|rest| rest.chars().next().is_none_or(char::is_whitespace))
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    let after_marker = if is_start_marker(line) {
        trimmed[3..].trim_start()
    } else {
        trimmed
    };
    !after_marker.is_empty() && !after_marker.starts_with('#')
}

/// Splits YAML text into documents at `---` and `...` lines (the markers may not occur at
/// column 0 inside content, so this split is the parser's).
pub fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0; // byte offset of the current chunk
    let mut first_line = 1;
    let mut content_line = None;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let end = offset + line.len();
        if is_start_marker(line) || is_end_marker(line) {
            push_chunk(
                &mut chunks,
                text,
                start,
                offset,
                first_line,
                content_line.take(),
            );
            // A `---` line belongs to the document it opens; a `...` line to none.
            (start, first_line) = if is_end_marker(line) {
                (end, number + 1)
            } else {
                (offset, number)
            };
        }
        if content_line.is_none() && is_content(line) && !is_end_marker(line) {
            content_line = Some(number);
        }
        offset = end;
    }
    push_chunk(
        &mut chunks,
        text,
        start,
        text.len(),
        first_line,
        content_line,
    );
    chunks
}

fn push_chunk<'a>(
    chunks: &mut Vec<Chunk<'a>>,
    text: &'a str,
    start: usize,
    end: usize,
    first_line: usize,
    content_line: Option<usize>,
) {
    if let Some(body) = text.get(start..end).filter(|b| !b.trim().is_empty()) {
        chunks.push(Chunk {
            text: body,
            first_line,
            content_line: content_line.unwrap_or(first_line),
        });
    }
}

/// 1-based line of a byte offset.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|b| *b == b'\n').count() + 1
}

/// Lines where the block-sequence items of a top-level `items:` key start, if exactly
/// `count` are found (a flow sequence or unusual layout gives `None`: callers fall back to
/// the document's line).
pub fn item_lines(chunk: &Chunk<'_>, count: usize) -> Option<Vec<usize>> {
    let mut lines = chunk
        .text
        .lines()
        .enumerate()
        .map(|(i, l)| (chunk.first_line + i, l));
    lines.find(|(_, l)| l.trim_end() == "items:")?;
    let mut indent = None;
    let mut found = Vec::with_capacity(count);
    for (number, line) in lines {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let depth = line.len() - trimmed.len();
        let item = trimmed == "-" || trimmed.starts_with("- ");
        match indent {
            None if item => indent = Some(depth),
            Some(i) if item && depth == i => {}
            Some(i) if depth > i => continue,
            _ => break,
        }
        found.push(number);
    }
    (found.len() == count).then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_markers_with_their_lines() {
        let text = "a: 1\n---\n# note\nb: 2\n--- {c: 3}\n...\n# trailing\n";
        let chunks = split_documents(text);
        let summary: Vec<(usize, usize)> = chunks
            .iter()
            .map(|c| (c.first_line, c.content_line))
            .collect();
        assert_eq!(summary, [(1, 1), (2, 4), (5, 5), (7, 7)]);
        assert_eq!(chunks[1].text, "---\n# note\nb: 2\n");
    }

    #[test]
    fn markers_need_column_zero_and_a_separator() {
        assert!(is_start_marker("---\n"));
        assert!(is_start_marker("--- !x\n"));
        assert!(!is_start_marker(" ---\n"));
        assert!(!is_start_marker("----\n"));
    }

    #[test]
    fn item_lines_follow_kubectl_layout() {
        let text = "apiVersion: v1\nitems:\n- kind: A\n  x:\n  - 1\n- kind: B\nkind: List\n";
        let chunk = &split_documents(text)[0];
        assert_eq!(item_lines(chunk, 2), Some(vec![3, 6]));
        assert_eq!(item_lines(chunk, 3), None);
    }

    #[test]
    fn offsets_map_to_lines() {
        assert_eq!(line_of_offset("a\nb\nc", 4), 3);
        assert_eq!(line_of_offset("a", 0), 1);
    }
}

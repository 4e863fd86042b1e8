//! Pages bounded in bytes: a JSON array written one item at a time that stops before it
//! passes a byte budget (`ApiOptions::max_page_bytes`), so a list of large items (blocks
//! near the size limit, a full pool) costs the node at most the budget plus one item,
//! however many items were asked for.
//!
//! ```text
//!   item ──serde_json──▶ appended to the array ──still within the budget?──yes──▶ next item
//!                                     (or the first item) │no
//!                                     taken back, page cut ◀┘ ──▶ `x-page-truncated: true`
//! ```
//!
//! Items are serialized as they are read and their values dropped at once: the answer's
//! bytes are counted exactly, never estimated, and the page never exists twice in memory.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// The header that says a page holds fewer items than asked because it reached the byte
/// budget; the route's own header (`x-next-start`, `x-next-offset`) says where the rest
/// starts.
pub const PAGE_TRUNCATED_HEADER: &str = "x-page-truncated";

/// The byte budget of one page, as the router hands it to the list handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageBytes(pub(crate) usize);

/// A JSON array being written, with its byte budget.
#[derive(Debug)]
pub(crate) struct JsonArrayPage {
    json: Vec<u8>,
    budget: usize,
    items: usize,
    truncated: bool,
}

impl JsonArrayPage {
    /// An empty page that may hold `budget` bytes of JSON (the brackets included).
    pub(crate) fn new(budget: PageBytes) -> JsonArrayPage {
        JsonArrayPage {
            json: b"[".to_vec(),
            budget: budget.0,
            items: 0,
            truncated: false,
        }
    }

    /// Appends `item` if the page, closed after it, stays within the budget, or if it is the
    /// first item (a page always makes progress). Returns false, leaving the page as it was
    /// and marking it truncated, if the item does not fit: the caller stops there.
    ///
    /// # Errors
    /// A 500 if the item does not serialize (a bug: the API's shapes always do).
    pub(crate) fn push(&mut self, item: &impl Serialize) -> Result<bool, ApiError> {
        let before = self.json.len();
        if self.items > 0 {
            self.json.push(b',');
        }
        serde_json::to_writer(&mut self.json, item)
            .map_err(|error| ApiError::internal(format!("could not write JSON: {error}")))?;
        // + 1 for the closing bracket.
        if self.items > 0 && self.json.len() + 1 > self.budget {
            self.json.truncate(before);
            self.truncated = true;
            return Ok(false);
        }
        self.items += 1;
        Ok(true)
    }

    /// How many items the page holds.
    pub(crate) fn len(&self) -> usize {
        self.items
    }

    /// True if an item was refused for the budget.
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The closed array as an `application/json` answer with `headers`, plus
    /// `x-page-truncated: true` if `truncated` (the budget cut the page, or the caller
    /// knows of items it did not try for the same reason).
    pub(crate) fn into_response(self, mut headers: HeaderMap, truncated: bool) -> Response {
        let mut json = self.json;
        json.push(b']');
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if truncated {
            headers.insert(PAGE_TRUNCATED_HEADER, HeaderValue::from_static("true"));
        }
        (headers, json).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(page: JsonArrayPage) -> String {
        let mut json = page.json;
        json.push(b']');
        String::from_utf8(json).expect("JSON is UTF-8")
    }

    #[test]
    fn a_page_writes_what_serde_json_writes_for_the_whole_list() {
        let items = vec![vec!["a"; 3], vec![], vec!["bc"]];
        let mut page = JsonArrayPage::new(PageBytes(1024));
        for item in &items {
            assert!(page.push(item).expect("serializes"));
        }
        assert!(!page.is_truncated());
        assert_eq!(page.len(), 3);
        assert_eq!(
            written(page),
            serde_json::to_string(&items).expect("serializes")
        );
        let empty = JsonArrayPage::new(PageBytes(1024));
        assert_eq!(written(empty), "[]");
    }

    #[test]
    fn a_page_stops_at_its_byte_budget_but_always_holds_one_item() {
        // Each item is `"xxxxxxxx"`: 10 bytes; two with brackets and a comma are 23.
        let item = "x".repeat(8);
        let mut page = JsonArrayPage::new(PageBytes(23));
        assert!(page.push(&item).expect("serializes"));
        assert!(
            page.push(&item).expect("serializes"),
            "exactly at the budget"
        );
        assert!(!page.push(&item).expect("serializes"), "one byte over");
        assert!(page.is_truncated());
        assert_eq!(page.len(), 2);
        assert_eq!(written(page).len(), 23);

        let mut tiny = JsonArrayPage::new(PageBytes(1));
        assert!(
            tiny.push(&item).expect("serializes"),
            "the first item always fits"
        );
        assert!(!tiny.push(&item).expect("serializes"));
        assert_eq!(written(tiny), format!("[\"{item}\"]"));
    }
}

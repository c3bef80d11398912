//! Cursor paging of the admin lists: `?limit=N&after=ID`, in id order. The cursor is the last id
//! of the page (keyset paging), so a page costs one index range scan wherever it is, and rows
//! added or removed meanwhile never make a page skip or repeat another's rows.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

/// Rows per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 25;
/// Most rows per page.
pub const MAX_LIMIT: i64 = 100;

/// The query of a list: `limit` and `after`, both optional. Read as text so that a malformed
/// value is a `400` naming it rather than a generic query error.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page, 1–100 (default 25).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `next` of the previous page: the rows after this id. Absent: the first page.
    pub after: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// Rows after this id.
    pub after: Option<String>,
    /// Rows per page.
    pub limit: i64,
}

/// One page: its rows and the cursor of the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows, in id order.
    pub items: Vec<T>,
    /// The `after` of the following page.
    pub next: Option<String>,
}

impl PageQuery {
    /// Validates the query: `limit` a whole number from 1 to [`MAX_LIMIT`] (400 `limit`),
    /// `after` an id `valid_after` accepts (400 `after` with its message).
    pub fn parse(
        &self,
        valid_after: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Paging, ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::field(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let after = match self.after.as_deref() {
            None => None,
            Some(raw) => {
                valid_after(raw).map_err(|message| ApiError::field("after", message))?;
                Some(raw.to_owned())
            }
        };
        Ok(Paging { after, limit })
    }
}

impl Paging {
    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page of `rows` (fetched with [`Paging::fetch`], in id order).
    pub fn page<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next = if more { rows.last().map(id) } else { None };
        Page { items: rows, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, after: Option<&str>) -> PageQuery {
        PageQuery {
            limit: limit.map(str::to_owned),
            after: after.map(str::to_owned),
        }
    }

    fn any(_: &str) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(query(None, None).parse(any).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(query(Some("100"), None).parse(any).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "ten", "1.5", ""] {
            let error = query(Some(bad), None).parse(any).unwrap_err();
            assert!(
                matches!(&error, ApiError::InvalidField { field, .. } if field == "limit"),
                "{bad}: {error:?}"
            );
        }
        let error = query(None, Some("x"))
            .parse(|_| Err("no".into()))
            .unwrap_err();
        assert!(matches!(&error, ApiError::InvalidField { field, .. } if field == "after"));
    }

    #[test]
    fn next_is_the_last_id_only_when_more_rows_follow() {
        let paging = Paging {
            after: None,
            limit: 2,
        };
        let page = paging.page(vec![1, 2, 3], |n| n.to_string());
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next.as_deref(), Some("2"));
        let last = paging.page(vec![1, 2], |n| n.to_string());
        assert_eq!(last.next, None);
    }
}

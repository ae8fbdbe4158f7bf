//! Listings: each backend pages differently, but what a sink returns is the same sorted
//! list of valid keys.

use std::future::Future;

use auditsync_core::{ObjectKey, ObjectMeta, SinkError};

/// Collects listed objects: keeps those whose key auditsync could have written, sorted.
#[derive(Debug, Default)]
pub struct ObjectList {
    objects: Vec<ObjectMeta>,
}

impl ObjectList {
    /// Adds one listed object. A key that is not a valid [`ObjectKey`] (e.g. `a//b`) is not
    /// one of auditsync's objects and is left out rather than failing the listing; a
    /// negative size (some SDKs use signed integers) counts as 0.
    pub fn push(&mut self, key: impl Into<String>, size: i64) {
        if let Ok(key) = ObjectKey::new(key.into()) {
            self.objects.push(ObjectMeta {
                key,
                size: size.max(0) as u64,
            });
        }
    }

    /// The objects, sorted by key.
    pub fn finish(mut self) -> Vec<ObjectMeta> {
        self.objects.sort_by(|a, b| a.key.cmp(&b.key));
        self.objects
    }
}

/// One page of a listing: `(key, size)` pairs and the token of the next page, if any.
#[derive(Debug, Default)]
pub struct Page {
    /// The page's objects.
    pub objects: Vec<(String, i64)>,
    /// The next page's token; `None` (or empty) ends the listing.
    pub next: Option<String>,
}

/// Fetches pages (`fetch(None)` first, then `fetch(Some(token))`) until one has no next
/// token, and returns every valid object sorted by key.
pub async fn collect_pages<F, Fut>(mut fetch: F) -> Result<Vec<ObjectMeta>, SinkError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page, SinkError>>,
{
    let mut list = ObjectList::default();
    let mut token = None;
    loop {
        let page = fetch(token.take()).await?;
        for (key, size) in page.objects {
            list.push(key, size);
        }
        match page.next {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok(list.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_followed_to_the_end_and_merged_sorted() {
        let pages = [
            (vec![("b/2", 2), ("bad//key", 9)], Some("t1")),
            (vec![("a/1", -1)], Some("t2")),
            (vec![("c/3", 3)], None),
        ];
        let mut asked = Vec::new();
        let listed = collect_pages(|token| {
            asked.push(token.clone());
            let i = asked.len() - 1;
            let (objects, next) = &pages[i];
            let page = Page {
                objects: objects.iter().map(|(k, s)| (k.to_string(), *s)).collect(),
                next: next.map(str::to_string),
            };
            async move { Ok(page) }
        })
        .await
        .unwrap();
        assert_eq!(asked, [None, Some("t1".into()), Some("t2".into())]);
        let got: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
        assert_eq!(got, [("a/1", 0), ("b/2", 2), ("c/3", 3)]);
    }
}

//! One page of a list: the shape every paged response shares (HTTP_API.md, "Pagination"),
//! written once.
//!
//! On the wire a page is `{total, page, page_size, ...}`: the header, then what the
//! resource adds, named as the contract names it (`decks`, `cards`, a `query`, a
//! `deck_id`). The resource's part is a type of its own (`B`), flattened after the header.
//! `B` carries the name the contract gives the whole page (`#[schema(as = DeckList)]`),
//! and the page is documented under it as one object, exactly as a struct written out in
//! full would be (`B` itself never appears in the document).
//!
//! The schema is composed by hand rather than derived: utoipa documents a flattened field
//! as an `allOf`, which would change the document's shapes.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, schema::AdditionalProperties},
};

use super::Breach;

/// A page of a list response; `B` is the resource's part after the header: a derived
/// object schema, `#[serde(deny_unknown_fields)]`, named as the page.
#[derive(Debug, Serialize)]
pub struct Page<B> {
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
    #[serde(flatten)]
    pub items: B,
}

/// A service's answer to a paged list call: it carries the page header.
pub trait PagedAnswer {
    fn total(&self) -> u64;
    fn page(&self) -> u32;
    fn page_size(&self) -> u32;
}

impl<B> Page<B> {
    /// The page of a service's answer: its header, and the resource's part converted.
    pub fn of<A>(answer: A) -> Result<Self, Breach>
    where
        A: PagedAnswer,
        B: TryFrom<A, Error = Breach>,
    {
        Ok(Self {
            total: answer.total(),
            page: answer.page(),
            page_size: answer.page_size(),
            items: B::try_from(answer)?,
        })
    }
}

impl<B: ToSchema> PartialSchema for Page<B> {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::Object(items)) = B::schema() else {
            // A derived named struct is always an object; the document is built at start,
            // so a page of anything else stops the start.
            panic!("the items of page {} must be an object schema", B::name());
        };
        let mut page = ObjectBuilder::new()
            .property("total", u64::schema())
            .required("total")
            .property("page", u32::schema())
            .required("page")
            .property("page_size", u32::schema())
            .required("page_size");
        for (name, property) in items.properties {
            page = page.property(name, property);
        }
        for name in items.required {
            page = page.required(name);
        }
        page.additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl<B: ToSchema> ToSchema for Page<B> {
    fn name() -> Cow<'static, str> {
        B::name()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        B::schemas(schemas);
    }
}

/// The page header of the services' list answers, read from their own fields.
macro_rules! paged_answers {
    ($($answer:ty),* $(,)?) => {$(
        impl PagedAnswer for $answer {
            fn total(&self) -> u64 {
                self.total
            }
            fn page(&self) -> u32 {
                self.page
            }
            fn page_size(&self) -> u32 {
                self.page_size
            }
        }
    )*};
}

paged_answers!(
    proto::deck::v1::ListDecksResponse,
    proto::deck::v1::SearchDecksResponse,
    proto::deck::v1::ListCardsResponse,
    proto::deck::v1::SearchCardsResponse,
    proto::deck::v1::ListReviewsResponse,
    proto::deck::v1::ListDeckProgressResponse,
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Serialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[schema(as = ThingList)]
    struct Things {
        query: String,
        things: Vec<u32>,
    }

    #[test]
    fn a_page_is_one_object_header_first_on_the_wire_and_in_its_schema() {
        let page = Page {
            total: 7,
            page: 2,
            page_size: 5,
            items: Things {
                query: "q".into(),
                things: vec![1],
            },
        };

        let wire = serde_json::to_string(&page).unwrap();
        let RefOr::T(Schema::Object(object)) = Page::<Things>::schema() else {
            panic!("a page's schema is an object");
        };
        let properties: Vec<&str> = object.properties.keys().map(String::as_str).collect();
        let schema = serde_json::to_value(&object).unwrap();

        assert_eq!(
            wire,
            r#"{"total":7,"page":2,"page_size":5,"query":"q","things":[1]}"#
        );
        assert_eq!(Page::<Things>::name(), "ThingList");
        assert_eq!(
            properties,
            ["total", "page", "page_size", "query", "things"]
        );
        assert_eq!(
            object.required,
            ["total", "page", "page_size", "query", "things"]
        );
        assert_eq!(schema["additionalProperties"], json!(false));
        assert!(schema.get("allOf").is_none(), "{schema}");
    }
}

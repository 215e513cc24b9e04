//! Tags: what a tag may be, how many, repeats, and how PUT and PATCH treat
//! them.

use super::*;

const URL: &str = "http://127.0.0.1:1/";

#[test]
fn tags_are_kept_in_the_order_given_and_absent_or_null_is_none() {
    let spec = full_spec(&body(
        URL,
        json!({"tags": ["prod", "api", "team:pay/eu-1", "v1.2_x", "Prod"]}),
    ))
    .unwrap();
    assert_eq!(
        spec.tags,
        ["prod", "api", "team:pay/eu-1", "v1.2_x", "Prod"]
    );
    assert!(full_spec(&body(URL, json!({}))).unwrap().tags.is_empty());
    assert!(
        full_spec(&body(URL, json!({"tags": null})))
            .unwrap()
            .tags
            .is_empty()
    );
    let longest = "a".repeat(MAX_TAG_LEN);
    let most: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
    assert_eq!(
        full_spec(&body(URL, json!({"tags": [longest]})))
            .unwrap()
            .tags,
        std::slice::from_ref(&longest)
    );
    assert_eq!(
        full_spec(&body(URL, json!({"Tags": most}))).unwrap().tags,
        most
    );
}

#[test]
fn each_bad_tag_is_named_by_its_place() {
    for (tags, field) in [
        (json!(["ok", ""]), "tags[1]"),
        (json!(["a".repeat(MAX_TAG_LEN + 1)]), "tags[0]"),
        (json!(["ok", "with space"]), "tags[1]"),
        (json!(["é"]), "tags[0]"),
        (json!(["a,b"]), "tags[0]"),
        (json!(["a*"]), "tags[0]"),
        (json!(["x", 5]), "tags[1]"),
        (json!(["prod", "api", "prod"]), "tags[2]"),
        (json!("prod"), "tags"),
        (json!({"prod": true}), "tags"),
    ] {
        let errs = refused(URL, json!({ "tags": tags }));
        assert_eq!(fields_of(&errs), [field], "{tags}");
    }
    let too_many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
    assert_eq!(
        fields_of(&refused(URL, json!({ "tags": too_many }))),
        ["tags"]
    );
    let errs = refused(URL, json!({"tags": ["a b", "ok", "ok", ""]}));
    assert_eq!(fields_of(&errs), ["tags[0]", "tags[2]", "tags[3]"]);
    assert!(errs[1].message.contains("tags[1]"), "{}", errs[1].message);
}

#[test]
fn patch_replaces_the_list_keeps_it_when_absent_and_null_clears_it() {
    let current = full_spec(&body(URL, json!({"tags": ["prod", "api"]}))).unwrap();
    let kept = patch_spec(&current, &json!({"name": "b"})).unwrap();
    assert_eq!(kept.tags, ["prod", "api"]);
    let replaced = patch_spec(&current, &json!({"tags": ["staging"]})).unwrap();
    assert_eq!(replaced.tags, ["staging"]);
    assert!(
        patch_spec(&current, &json!({"tags": null}))
            .unwrap()
            .tags
            .is_empty()
    );
    assert!(
        patch_spec(&current, &json!({"tags": []}))
            .unwrap()
            .tags
            .is_empty()
    );
    let errs = patch_spec(&current, &json!({"tags": ["ok", "no way"]})).unwrap_err();
    assert_eq!(fields_of(&errs), ["tags[1]"]);
    // PUT sets every field: tags left out are none.
    let put = replace_spec(&current, &body(URL, json!({}))).unwrap();
    assert!(put.tags.is_empty());
}

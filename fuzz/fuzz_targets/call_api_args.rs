//! `call_api` arguments from an agent: URL parsing, grant matching, header/body preparation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<broker::upstream::ApiRequest>(data) else {
        return;
    };
    let providers = vec![broker::Provider {
        slug: "fixture".into(),
        name: "Fixture".into(),
        resource: "http://127.0.0.1:9000/api".into(),
        api_bases: vec!["http://127.0.0.1:9000/api".into()],
        scopes: vec![],
        docs_url: None,
        custom: true,
    }];
    if let Ok(target) = broker::upstream::parse_target(&request.url)
        && let Some(p) = broker::upstream::pick(&providers, &target)
    {
        // Whatever matched must really lie under the base.
        let base = url::Url::parse(&p.api_bases[0]).expect("base");
        assert!(broker::upstream::is_under(&base, &target));
        assert_eq!(target.host_str(), Some("127.0.0.1"));
    }
    let _ = broker::upstream::prepare(&request);
});

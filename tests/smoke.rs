use annals::*;
#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options { segment_size_bytes: 8192, index_interval_events: 4, ..Default::default() };
    let store = Store::open_with(dir.path(), opts()).unwrap();
    for i in 0..200u64 {
        let s = format!("s-{}", i % 7);
        store.append(&s, ExpectedVersion::Any, &[EventData::new("T", format!("e{i}").into_bytes())]).unwrap();
    }
    let all: Vec<_> = store.read_all(0).unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(all.len(), 200);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position(), i as u64);
        assert_eq!(e.data().as_ref(), format!("e{i}").as_bytes());
    }
    let s3: Vec<_> = store.read_stream("s-3", 5).unwrap().map(|e| e.unwrap().offset()).collect();
    assert_eq!(s3, (5..29).collect::<Vec<_>>());
    let back: Vec<_> = store.read_stream_backwards("s-3", Some(10)).unwrap().map(|e| e.unwrap().offset()).collect();
    assert_eq!(back, (0..=10).rev().collect::<Vec<_>>());
    store.close().unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(store.recovery_report().checkpoint_used, "{:?}", store.recovery_report());
    assert_eq!(store.head_position(), Some(199));
    assert_eq!(store.stream_version("s-3"), Some(28));
    let all: Vec<_> = store.read_all(150).unwrap().map(|e| e.unwrap().position()).collect();
    assert_eq!(all, (150..200).collect::<Vec<_>>());
    drop(store);
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let store = Store::open_with(dir.path(), opts()).unwrap();
    assert!(!store.recovery_report().checkpoint_used);
    assert_eq!(store.stream_version("s-3"), Some(28));
    let s3: Vec<_> = store.read_stream("s-3", 0).unwrap().map(|e| e.unwrap().offset()).collect();
    assert_eq!(s3, (0..29).collect::<Vec<_>>());
}

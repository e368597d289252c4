//! The filesystem over an in-memory store, without a kernel.
#![allow(clippy::unwrap_used)]
use super::*;
use object_store::PutPayload;
use object_store::memory::InMemory;

fn fs_over(store: Arc<InMemory>, writable: bool) -> Fs {
    let volumes = vec![MountVolume {
        name: "vol".into(),
        store,
        lister: None,
        writes: if writable {
            Writes::Allowed
        } else {
            Writes::ReadOnly
        },
        origin: None,
    }];
    Fs::new(volumes, FsConfig::default(), MountMetrics::new())
}

async fn put(store: &InMemory, key: &str, data: &'static [u8]) {
    store
        .put(&Path::from(key), PutPayload::from_static(data))
        .await
        .unwrap();
}

async fn names(fs: &Fs, ino: u64) -> Vec<String> {
    let fh = fs.opendir(ino).await.unwrap();
    let mut out = Vec::new();
    fs.readdir(fh, 0, false, |e| {
        out.push(e.name.clone());
        false
    })
    .await
    .unwrap();
    fs.releasedir(fh);
    out
}

#[tokio::test]
async fn directories_come_from_slashes_in_keys() {
    let store = Arc::new(InMemory::new());
    put(&store, "a/b/c.txt", b"hello").await;
    put(&store, "a/d.txt", b"x").await;
    put(&store, "top", b"t").await;
    let fs = fs_over(store, false);
    assert_eq!(names(&fs, ROOT).await, [".", "..", "vol"]);
    let vol = fs.lookup(ROOT, "vol").await.unwrap();
    assert_eq!(names(&fs, vol.ino).await, [".", "..", "a", "top"]);
    let a = fs.lookup(vol.ino, "a").await.unwrap();
    assert_eq!(a.kind, Kind::Dir);
    let b = fs.lookup(a.ino, "b").await.unwrap();
    let c = fs.lookup(b.ino, "c.txt").await.unwrap();
    assert_eq!((c.kind, c.size, c.perm), (Kind::File, 5, 0o444));
    let o = fs.open(c.ino, OpenMode::default()).await.unwrap();
    assert_eq!(&fs.read(o.fh, 1, 100).await.unwrap()[..], b"ello");
    assert_eq!(fs.read(o.fh, 5, 100).await.unwrap().len(), 0);
    fs.release(o.fh).await.unwrap();
    assert!(matches!(
        fs.lookup(vol.ino, "missing").await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn read_only_volumes_refuse_every_change() {
    let store = Arc::new(InMemory::new());
    put(&store, "f", b"data").await;
    let fs = fs_over(store, false);
    let vol = fs.lookup(ROOT, "vol").await.unwrap();
    let f = fs.lookup(vol.ino, "f").await.unwrap();
    let erofs = |r: Result<()>| assert_eq!(r.unwrap_err().errno(), libc::EROFS);
    erofs(fs.create(vol.ino, "new").await.map(|_| ()));
    erofs(fs.mkdir(vol.ino, "d").await.map(|_| ()));
    erofs(fs.unlink(vol.ino, "f").await);
    erofs(fs.rename(vol.ino, "f", vol.ino, "g", false).await);
    erofs(fs.setattr(f.ino, Some(0), None).await.map(|_| ()));
    let write = OpenMode {
        write: true,
        truncate: false,
    };
    erofs(fs.open(f.ino, write).await.map(|_| ()));
    erofs(fs.mkdir(ROOT, "x").await.map(|_| ()));
}

#[tokio::test]
async fn written_files_appear_whole_on_close() {
    let store = Arc::new(InMemory::new());
    let fs = fs_over(store.clone(), true);
    let vol = fs.lookup(ROOT, "vol").await.unwrap();
    let d = fs.mkdir(vol.ino, "dir").await.unwrap();
    let (attr, o) = fs.create(d.ino, "f.bin").await.unwrap();
    fs.write(o.fh, 0, Bytes::from_static(b"hello world"))
        .await
        .unwrap();
    fs.write(o.fh, 6, Bytes::from_static(b"WORLD"))
        .await
        .unwrap();
    assert!(store.head(&Path::from("dir/f.bin")).await.is_err());
    assert_eq!(fs.getattr(attr.ino).await.unwrap().size, 11);
    fs.flush(o.fh).await.unwrap();
    fs.release(o.fh).await.unwrap();
    let got = store
        .get(&Path::from("dir/f.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"hello WORLD");
    // Rename the directory, then the file back and forth.
    fs.rename(vol.ino, "dir", vol.ino, "moved", false)
        .await
        .unwrap();
    let got = store
        .get(&Path::from("moved/f.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"hello WORLD");
    let m = fs.lookup(vol.ino, "moved").await.unwrap();
    assert_eq!(
        fs.rmdir(vol.ino, "moved").await.unwrap_err().errno(),
        libc::ENOTEMPTY
    );
    // Truncate and append through a second open.
    let f = fs.lookup(m.ino, "f.bin").await.unwrap();
    fs.setattr(f.ino, Some(5), None).await.unwrap();
    let o = fs
        .open(
            f.ino,
            OpenMode {
                write: true,
                truncate: false,
            },
        )
        .await
        .unwrap();
    fs.write(o.fh, 5, Bytes::from_static(b"!")).await.unwrap();
    fs.release(o.fh).await.unwrap();
    let got = store
        .get(&Path::from("moved/f.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"hello!");
    fs.unlink(m.ino, "f.bin").await.unwrap();
    assert!(store.head(&Path::from("moved/f.bin")).await.is_err());
    fs.rmdir(vol.ino, "moved").await.unwrap();
}

#[tokio::test]
async fn readdir_resumes_where_the_kernel_stopped_and_restarts_on_rewind() {
    let store = Arc::new(InMemory::new());
    for i in 0..25 {
        put(&store, &format!("d/{i:02}"), b"x").await;
    }
    let fs = fs_over(store, true);
    let vol = fs.lookup(ROOT, "vol").await.unwrap();
    let d = fs.lookup(vol.ino, "d").await.unwrap();
    fs.mkdir(d.ino, "local-dir").await.unwrap();
    let fh = fs.opendir(d.ino).await.unwrap();
    // Replies that hold 4 entries, as a small kernel buffer would.
    let mut offset = 0;
    let mut names = Vec::new();
    loop {
        let mut batch = Vec::new();
        fs.readdir(fh, offset, true, |e| {
            if batch.len() == 4 {
                return true;
            }
            batch.push((e.offset, e.name.clone()));
            false
        })
        .await
        .unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.0;
        names.extend(batch.into_iter().map(|b| b.1));
    }
    let mut expected = vec![".".to_string(), "..".into(), "local-dir".into()];
    expected.extend((0..25).map(|i| format!("{i:02}")));
    assert_eq!(names, expected);
    // rewinddir: from the start again.
    let mut again = Vec::new();
    fs.readdir(fh, 0, false, |e| {
        again.push(e.name.clone());
        false
    })
    .await
    .unwrap();
    assert_eq!(again, expected);
    fs.releasedir(fh);
}

#[tokio::test]
async fn a_file_changed_while_open_is_stale_not_mixed() {
    let store = Arc::new(InMemory::new());
    put(&store, "f", b"version one").await;
    let fs = fs_over(store.clone(), false);
    let vol = fs.lookup(ROOT, "vol").await.unwrap();
    let f = fs.lookup(vol.ino, "f").await.unwrap();
    let o = fs.open(f.ino, OpenMode::default()).await.unwrap();
    assert!(!o.keep_cache, "first open: nothing cached yet");
    assert_eq!(&fs.read(o.fh, 0, 7).await.unwrap()[..], b"version");
    put(&store, "f", b"VERSION TWO").await;
    assert_eq!(fs.read(o.fh, 8, 3).await.unwrap_err().errno(), libc::ESTALE);
    fs.release(o.fh).await.unwrap();
    // Reopened after the attributes expire: the new version, and the kernel must drop
    // its pages. Reopened unchanged: the kernel may keep them.
    fs.getattr_refresh(f.ino).await.unwrap();
    let o = fs.open(f.ino, OpenMode::default()).await.unwrap();
    assert!(!o.keep_cache);
    assert_eq!(&fs.read(o.fh, 0, 100).await.unwrap()[..], b"VERSION TWO");
    fs.release(o.fh).await.unwrap();
    let o = fs.open(f.ino, OpenMode::default()).await.unwrap();
    assert!(o.keep_cache);
    fs.release(o.fh).await.unwrap();
}

#[tokio::test]
async fn listing_attributes_spare_the_store_and_forget_frees_inodes() {
    let store = Arc::new(InMemory::new());
    for i in 0..50 {
        store
            .put(
                &Path::from(format!("d/f{i:03}")),
                PutPayload::from(vec![0u8; i]),
            )
            .await
            .unwrap();
    }
    let fs = fs_over(store, false);
    let vol = fs.lookup(ROOT, "vol").await.unwrap();
    let d = fs.lookup(vol.ino, "d").await.unwrap();
    let fh = fs.opendir(d.ino).await.unwrap();
    let mut seen = Vec::new();
    fs.readdir(fh, 0, true, |e| {
        seen.push((e.attr.ino, e.name.clone(), e.attr.size));
        false
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 52);
    let before = fs.metrics().backend_count("head");
    for (_, name, size) in &seen[2..] {
        let a = fs.lookup(d.ino, name).await.unwrap();
        assert_eq!(a.size, *size);
    }
    assert_eq!(
        fs.metrics().backend_count("head"),
        before,
        "no HEAD per entry"
    );
    let held = fs.inode_count();
    for (ino, name, _) in &seen[2..] {
        assert!(!name.is_empty());
        fs.forget(*ino, 2);
    }
    assert_eq!(fs.inode_count(), held - 50);
}

#[tokio::test]
async fn folder_markers_are_their_folders_and_go_with_rmdir() {
    use archway_dataplane::key::MARKER;
    let store = Arc::new(InMemory::new());
    // `empty/` and `full/` as an S3 client made them (the store path ends in a space segment).
    put(&store, &format!("empty/{MARKER}"), b"").await;
    put(&store, &format!("full/{MARKER}"), b"").await;
    put(&store, "full/f.txt", b"f").await;
    let fs = fs_over(store.clone(), true);
    let vol = fs.lookup(ROOT, "vol").await.unwrap();
    assert_eq!(names(&fs, vol.ino).await, [".", "..", "empty", "full"]);
    let full = fs.lookup(vol.ino, "full").await.unwrap();
    assert_eq!(full.kind, Kind::Dir);
    // The marker is no entry of its folder, and its name is none a file may have.
    assert_eq!(names(&fs, full.ino).await, [".", "..", "f.txt"]);
    assert!(matches!(
        fs.lookup(full.ino, MARKER).await,
        Err(FsError::InvalidName { .. })
    ));
    let empty = fs.lookup(vol.ino, "empty").await.unwrap();
    assert_eq!(names(&fs, empty.ino).await, [".", ".."]);
    // rmdir of a folder that only a marker holds removes the marker.
    fs.rmdir(vol.ino, "empty").await.unwrap();
    assert!(
        store
            .head(&Path::from(format!("empty/{MARKER}").as_str()))
            .await
            .is_err()
    );
    assert_eq!(names(&fs, vol.ino).await, [".", "..", "full"]);
}

//! The `cache_block_files` fuzz target's check, shared with `tests/fuzz_replay.rs`: the disk
//! tier's block files. An object is read through a disk-tiered cache so its
//! blocks are written to disk; one block file (chosen by the first input byte) is replaced by
//! the rest of the input; a new cache over the same directory rebuilds its index from the files
//! and the object is read again. Whatever the file holds, the bytes read must be the object's:
//! a damaged, truncated or forged block is detected (header, length, per-piece CRC) and fetched
//! again, never served. A panic, a hang or other bytes is a bug.
#![allow(clippy::disallowed_methods)] // a fuzz target and a test own their runtime and may block

use std::sync::Arc;
use std::time::Duration;

use archway_cache::{BlockCache, CacheConfig, CachedStore};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const BLOCK: u64 = 4096;

fn config(dir: &std::path::Path) -> CacheConfig {
    CacheConfig {
        block_size: BLOCK,
        memory_bytes: 64 * BLOCK,
        disk_bytes: 1 << 20,
        dir: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

fn block_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .flat_map(|shard| {
            std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "blk"))
        .collect();
    out.sort();
    out
}

/// One forged block file; Err when other bytes than the object's were read (a panic
/// propagates).
pub fn exercise(data: &[u8]) -> Result<(), String> {
    let Some((&pick, forged)) = data.split_first() else {
        return Ok(());
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return Ok(());
    };
    let Ok(dir) = tempfile::tempdir() else {
        return Ok(());
    };
    rt.block_on(async {
        let object: Vec<u8> = (0..3 * BLOCK + 100).map(|i| (i * 31 % 251) as u8).collect();
        let backend: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("volume/object.fits");
        backend
            .put(&path, PutPayload::from(object.clone()))
            .await
            .expect("put");
        let cache = BlockCache::new(config(dir.path())).await;
        let store = CachedStore::new(backend.clone(), cache.clone(), "fuzz/volume");
        let first = store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        if first != object {
            return Err("the first read returned other bytes".to_string());
        }
        // The disk tier writes behind the reader: wait for it (5 s at most).
        for _ in 0..2500 {
            if cache.disk_bytes() >= object.len() as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop((store, cache));

        // Nothing on disk would make the rest pass without testing anything.
        let files = block_files(dir.path());
        if files.is_empty() {
            return Err("no block reached the disk tier within 5 s".to_string());
        }
        let victim = &files[pick as usize % files.len()];
        std::fs::write(victim, forged).expect("replacing a block file");

        let cache = BlockCache::new(config(dir.path())).await;
        let store = CachedStore::new(backend.clone(), cache.clone(), "fuzz/volume");
        let again = store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        if again != object {
            return Err("a forged block file was served".to_string());
        }
        // Ranged reads across the pieces too.
        for (start, end) in [
            (0, 10),
            (BLOCK - 5, BLOCK + 5),
            (2 * BLOCK + 7, 3 * BLOCK + 100),
        ] {
            let got = store
                .get_range(&path, start..end)
                .await
                .expect("ranged get");
            if got[..] != object[start as usize..end as usize] {
                return Err(format!("a forged block file was served in {start}..{end}"));
            }
        }
        Ok(())
    })
}

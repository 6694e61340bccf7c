//! Following files on disk: certificates, trust bundles and signing keys are polled (a `stat` per
//! file per tick) and reloaded when they change. Polling rather than inotify because it also sees
//! Kubernetes' symlink swaps of Secret and ConfigMap volumes, and costs nothing measurable.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

/// How often watched files (certificates) are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What `stat` says about one file: modification time, length, inode. The inode catches a file
/// replaced by rename within the same clock tick with the same length. `None`: unreadable.
pub type Stamp = Option<(SystemTime, u64, u64)>;

/// Stat one file.
pub fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.modified().ok()?, m.len(), ino))
}

/// Stat several files.
pub fn stamps<P: AsRef<Path>>(paths: &[P]) -> Vec<Stamp> {
    paths.iter().map(|p| stamp(p.as_ref())).collect()
}

/// Something that can check its files and reload them.
pub trait Reload: Send + Sync + 'static {
    /// Check the files; reload what changed. Blocking I/O is fine: it runs on the blocking pool.
    fn poll_files(&self);
}

/// Call `target.poll_files()` every `every` until the target is dropped.
pub fn spawn_watcher<T: Reload>(target: &Arc<T>, every: Duration) -> tokio::task::JoinHandle<()> {
    let weak: Weak<T> = Arc::downgrade(target);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(me) = weak.upgrade() else { break };
            let _ = tokio::task::spawn_blocking(move || me.poll_files()).await;
        }
    })
}

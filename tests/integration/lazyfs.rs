//! A FUSE file system that loses, at a simulated power cut, every byte not yet fsynced (the idea of LazyFS,
//! which the reliability plan names but which is built from sources this machine cannot fetch).
//!
//! One flat directory, held in memory. Each file has its current bytes and its durable bytes: `write` and
//! truncation change the first, `fsync` copies them to the second. Creating, linking, renaming and unlinking
//! are durable at once (the kind of loss this models is data, as LazyFS's default does). `power_cut` returns
//! what a disk would hold after the cut, to be laid out in a real directory and opened there.

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const ROOT: u64 = 1;
// Attributes are never cached by the kernel: sizes change under it with every write.
const TTL: Duration = Duration::ZERO;

#[derive(Default)]
struct Node {
    current: Vec<u8>,
    durable: Vec<u8>,
    perm: u16,
    links: u32,
}

#[derive(Default)]
struct State {
    names: BTreeMap<String, u64>,
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    fsyncs: u64,
}

/// A mounted lazy file system; dropping it unmounts.
pub struct LazyFs {
    state: Arc<Mutex<State>>,
    _session: fuser::BackgroundSession,
}

impl LazyFs {
    pub fn mount(at: &Path) -> LazyFs {
        let state = Arc::new(Mutex::new(State { next_ino: ROOT + 1, ..Default::default() }));
        let fs = Fs { state: state.clone() };
        let options = [MountOption::FSName("steward-lazyfs".into())];
        let session = fuser::spawn_mount2(fs, at, &options).unwrap_or_else(|e| {
            panic!(
                "cannot mount the lazy file system at {}: {e} (needs /dev/fuse and fusermount3, Debian's fuse3)",
                at.display()
            )
        });
        LazyFs { state, _session: session }
    }

    /// The power goes: every file keeps only what was fsynced. Returns (name, bytes) as the disk now holds them.
    pub fn power_cut(&self) -> Vec<(String, Vec<u8>)> {
        let mut state = self.state.lock().unwrap();
        let State { names, nodes, .. } = &mut *state;
        for node in nodes.values_mut() {
            node.current = node.durable.clone();
        }
        names.iter().map(|(name, ino)| (name.clone(), nodes[ino].durable.clone())).collect()
    }

    pub fn fsyncs(&self) -> u64 {
        self.state.lock().unwrap().fsyncs
    }
}

struct Fs {
    state: Arc<Mutex<State>>,
}

fn attr(ino: u64, node: Option<&Node>) -> FileAttr {
    let now = SystemTime::now();
    let (kind, size, perm, nlink) = match node {
        Some(n) => (FileType::RegularFile, n.current.len() as u64, n.perm, n.links),
        None => (FileType::Directory, 0, 0o755, 2),
    };
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn name_of(name: &OsStr) -> Option<String> {
    name.to_str().map(str::to_string)
}

impl State {
    fn lookup(&self, parent: u64, name: &OsStr) -> Option<u64> {
        (parent == ROOT).then(|| name_of(name).and_then(|n| self.names.get(&n).copied())).flatten()
    }

    fn attr_of(&self, ino: u64) -> Option<FileAttr> {
        if ino == ROOT {
            return Some(attr(ROOT, None));
        }
        self.nodes.get(&ino).map(|n| attr(ino, Some(n)))
    }

    fn unlink(&mut self, name: &str) -> bool {
        let Some(ino) = self.names.remove(name) else { return false };
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.links = n.links.saturating_sub(1);
        }
        true
    }
}

impl Filesystem for Fs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let state = self.state.lock().unwrap();
        match state.lookup(parent, name).and_then(|ino| state.attr_of(ino)) {
            Some(a) => reply.entry(&TTL, &a, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.state.lock().unwrap().attr_of(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state.lock().unwrap();
        if let Some(node) = state.nodes.get_mut(&ino) {
            if let Some(size) = size {
                node.current.resize(size as usize, 0);
            }
            if let Some(mode) = mode {
                node.perm = (mode & 0o7777) as u16;
            }
        }
        match state.attr_of(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state.lock().unwrap();
        let (Some(name), true) = (name_of(name), parent == ROOT) else { return reply.error(libc::EINVAL) };
        let ino = state.next_ino;
        state.next_ino += 1;
        state.unlink(&name);
        state.names.insert(name, ino);
        state.nodes.insert(ino, Node { perm: (mode & !umask & 0o7777) as u16, links: 1, ..Default::default() });
        let a = attr(ino, state.nodes.get(&ino));
        reply.created(&TTL, &a, 0, 0, 0);
    }

    fn open(&mut self, _req: &Request<'_>, _ino: u64, _flags: i32, reply: ReplyOpen) {
        reply.opened(0, 0);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let state = self.state.lock().unwrap();
        let Some(node) = state.nodes.get(&ino) else { return reply.error(libc::ENOENT) };
        let start = (offset.max(0) as usize).min(node.current.len());
        let end = start.saturating_add(size as usize).min(node.current.len());
        reply.data(&node.current[start..end]);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state.lock().unwrap();
        let Some(node) = state.nodes.get_mut(&ino) else { return reply.error(libc::ENOENT) };
        let start = offset.max(0) as usize;
        if node.current.len() < start + data.len() {
            node.current.resize(start + data.len(), 0);
        }
        node.current[start..start + data.len()].copy_from_slice(data);
        reply.written(data.len() as u32);
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let mut state = self.state.lock().unwrap();
        state.fsyncs += 1;
        match state.nodes.get_mut(&ino) {
            Some(node) => {
                node.durable = node.current.clone();
                reply.ok();
            }
            None => reply.error(libc::ENOENT),
        }
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state.lock().unwrap();
        match name_of(name).filter(|_| parent == ROOT) {
            Some(n) if state.unlink(&n) => reply.ok(),
            _ => reply.error(libc::ENOENT),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state.lock().unwrap();
        let (Some(from), Some(to)) = (name_of(name), name_of(newname)) else { return reply.error(libc::EINVAL) };
        let Some(ino) = state.names.get(&from).copied().filter(|_| parent == ROOT && newparent == ROOT) else {
            return reply.error(libc::ENOENT);
        };
        state.unlink(&to);
        state.names.remove(&from);
        state.names.insert(to, ino);
        reply.ok();
    }

    fn link(&mut self, _req: &Request<'_>, ino: u64, newparent: u64, newname: &OsStr, reply: ReplyEntry) {
        let mut state = self.state.lock().unwrap();
        let Some(name) = name_of(newname).filter(|_| newparent == ROOT) else { return reply.error(libc::EINVAL) };
        if state.names.contains_key(&name) {
            return reply.error(libc::EEXIST);
        }
        let Some(node) = state.nodes.get_mut(&ino) else { return reply.error(libc::ENOENT) };
        node.links += 1;
        state.names.insert(name, ino);
        let a = state.attr_of(ino).expect("just linked");
        reply.entry(&TTL, &a, 0);
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let state = self.state.lock().unwrap();
        let entries = [(ROOT, FileType::Directory, ".".to_string()), (ROOT, FileType::Directory, "..".to_string())]
            .into_iter()
            .chain(state.names.iter().map(|(n, i)| (*i, FileType::RegularFile, n.clone())));
        for (i, (ino, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

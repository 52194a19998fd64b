//! The writer's VFS: the platform's own, with the WAL's writes gathered.
//!
//! Owns: gathering the contiguous writes SQLite makes to a WAL file (each frame
//! is two: a 24-byte header, then the page) and handing them to the platform
//! VFS as one write before anything that could observe them: a sync, a read, a
//! size, a truncate, a file control, the close. A commit of 60 frames was 120
//! `pwrite`s, each touching one or two page-cache pages as the frames do not
//! align with them; it is one per 64 KiB now (BENCHMARKS.md).
//! Never: changes what reaches the disk or when it is durable. SQLite syncs the
//! WAL before a commit counts (`synchronous=FULL`), and every gathered byte is
//! written before that sync; a process killed before it loses only frames of
//! a commit that never returned. Other files are the platform VFS's own.

// A VFS is a table of C callbacks over raw pointers that SQLite owns; this
// module keeps that unsafe code to itself.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open the writer's VFS by.
pub(crate) const NAME: &CStr = c"hookrouter-wal";

/// At most this much is gathered (a commit of 60 frames is 247 KB): larger
/// transactions are written in parts of this size. The buffer is allocated at
/// this size once and never grown, so the writer's memory stays bounded by it.
const MAX_GATHERED: usize = 1 << 20;

/// The most one call to the platform VFS writes: the unix VFS writes at most
/// 128 KiB less one byte per call (it masks the length) and reports the rest
/// as a full disk.
const CHUNK: usize = 64 << 10;

/// A WAL file: SQLite's header, then the platform VFS's file.
#[repr(C)]
struct Gathering {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    gathered: *mut Gathered,
}

struct Gathered {
    bytes: Vec<u8>,
    /// Where in the file `bytes` begin.
    at: i64,
}

/// Where the platform VFS's file begins within ours.
const REAL_AT: usize = std::mem::size_of::<Gathering>().next_multiple_of(16);

struct Vfs {
    ours: ffi::sqlite3_vfs,
    real: *mut ffi::sqlite3_vfs,
}

// SAFETY: registered once and never changed; SQLite serializes its own use.
unsafe impl Send for Vfs {}
unsafe impl Sync for Vfs {}

static VFS: OnceLock<Result<Box<Vfs>, c_int>> = OnceLock::new();

/// Registers the VFS (once per process); its name is [`NAME`].
pub(crate) fn register() -> rusqlite::Result<()> {
    let vfs = VFS.get_or_init(|| {
        // SAFETY: the default VFS lives for the process, and ours lives in
        // VFS, which is never dropped.
        unsafe {
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            if real.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let mut ours = *real;
            ours.szOsFile = (REAL_AT + (*real).szOsFile as usize) as c_int;
            ours.zName = NAME.as_ptr();
            ours.pNext = std::ptr::null_mut();
            ours.xOpen = Some(open);
            let mut vfs = Box::new(Vfs { ours, real });
            let rc = ffi::sqlite3_vfs_register(&mut vfs.ours, 0);
            if rc != ffi::SQLITE_OK {
                return Err(rc);
            }
            Ok(vfs)
        }
    });
    match vfs {
        Ok(_) => Ok(()),
        Err(rc) => Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(*rc),
            Some("cannot register the store's VFS".into()),
        )),
    }
}

fn real_vfs() -> *mut ffi::sqlite3_vfs {
    match VFS.get() {
        Some(Ok(v)) => v.real,
        _ => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real = real_vfs();
    if real.is_null() {
        return ffi::SQLITE_ERROR;
    }
    // SAFETY: SQLite gives `file` our szOsFile bytes, which hold the platform
    // VFS's file at REAL_AT (or at 0, for a file we leave to it).
    unsafe {
        let Some(real_open) = (*real).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return real_open(real, name, file, flags, out_flags);
        }
        let inner = (file as *mut u8).add(REAL_AT) as *mut ffi::sqlite3_file;
        let rc = real_open(real, name, inner, flags, out_flags);
        let ours = file as *mut Gathering;
        if rc != ffi::SQLITE_OK {
            (*ours).base.pMethods = std::ptr::null();
            return rc;
        }
        (*ours).real = inner;
        (*ours).gathered = Box::into_raw(Box::new(Gathered {
            bytes: Vec::new(),
            at: 0,
        }));
        (*ours).base.pMethods = &METHODS;
        ffi::SQLITE_OK
    }
}

/// The platform file and its methods.
///
/// # Safety
/// `f` is a file [`open`] wrapped.
unsafe fn real(
    f: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    unsafe {
        let inner = (*(f as *mut Gathering)).real;
        (inner, &*(*inner).pMethods)
    }
}

/// Writes what is gathered, in one call to the platform VFS.
///
/// # Safety
/// `f` is a file [`open`] wrapped.
unsafe fn flush(f: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let g = &mut *(*(f as *mut Gathering)).gathered;
        if g.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let (inner, m) = real(f);
        let Some(write) = m.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut rc = ffi::SQLITE_OK;
        let mut at = g.at;
        for chunk in g.bytes.chunks(CHUNK) {
            rc = write(inner, chunk.as_ptr().cast(), chunk.len() as c_int, at);
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += chunk.len() as i64;
        }
        g.bytes.clear();
        rc
    }
}

unsafe extern "C" fn write(
    f: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let amount = amount as usize;
        let g = &mut *(*(f as *mut Gathering)).gathered;
        let follows = g.at + g.bytes.len() as i64 == offset;
        if !g.bytes.is_empty() && (!follows || g.bytes.len() + amount > MAX_GATHERED) {
            let rc = flush(f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if amount > MAX_GATHERED {
            let (inner, m) = real(f);
            return match m.xWrite {
                Some(write) => write(inner, data, amount as c_int, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let g = &mut *(*(f as *mut Gathering)).gathered;
        if g.bytes.is_empty() {
            g.at = offset;
        }
        if g.bytes.capacity() < MAX_GATHERED {
            g.bytes.reserve_exact(MAX_GATHERED);
        }
        g.bytes
            .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), amount));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(f: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let rc = flush(f);
        let (inner, m) = real(f);
        let closed = m.xClose.map_or(ffi::SQLITE_OK, |close| close(inner));
        drop(Box::from_raw((*(f as *mut Gathering)).gathered));
        (*(f as *mut Gathering)).gathered = std::ptr::null_mut();
        if rc != ffi::SQLITE_OK { rc } else { closed }
    }
}

/// Defines a method that writes what is gathered, then calls the platform
/// VFS's own.
macro_rules! flushed {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            unsafe {
                let rc = flush(f);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                let (inner, m) = real(f);
                match m.$field {
                    Some(call) => call(inner, $($arg),*),
                    None => ffi::SQLITE_MISUSE,
                }
            }
        }
    };
}

flushed!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
flushed!(truncate, xTruncate, (size: i64));
flushed!(sync, xSync, (flags: c_int));
flushed!(file_size, xFileSize, (size: *mut i64));
flushed!(file_control, xFileControl, (op: c_int, arg: *mut c_void));

/// Defines a method that calls the platform VFS's own as it is (locks and
/// properties of the file, which gathered bytes do not change).
macro_rules! passed {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*), $none:expr) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            unsafe {
                let (inner, m) = real(f);
                match m.$field {
                    Some(call) => call(inner, $($arg),*),
                    None => $none,
                }
            }
        }
    };
}

passed!(lock, xLock, (level: c_int), ffi::SQLITE_OK);
passed!(unlock, xUnlock, (level: c_int), ffi::SQLITE_OK);
passed!(check_reserved, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_OK);
passed!(sector_size, xSectorSize, (), 4096);
passed!(device, xDeviceCharacteristics, (), 0);

/// Version 1: a WAL file has no shared memory of its own (that is the
/// database file's) and is never memory-mapped.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use super::super::schema;

    /// What a plain connection reads of table `t`: rows, bytes, and a sum
    /// that changes with any byte.
    fn seen(conn: &rusqlite::Connection) -> (i64, i64, i64) {
        conn.query_row(
            "SELECT count(*), coalesce(sum(length(body)), 0),
                    coalesce(sum(unicode(substr(body, 1 + id % 4000, 1)) * id), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    /// Transactions far larger than what is gathered at once, with a cache so
    /// small that SQLite spills pages into the WAL mid-transaction and reads
    /// them back, then a WAL restarted and overwritten: another connection
    /// reads every committed byte, and the database checks whole.
    #[test]
    fn every_committed_frame_reaches_other_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let w = schema::open_writer(&path).unwrap();
        w.pragma_update(None, "cache_size", -64).unwrap();
        w.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .unwrap();
        let r = schema::open(&path).unwrap();
        let row = |id: i64, round: i64| {
            let c = char::from(b'a' + ((id + round) % 26) as u8);
            c.to_string().repeat(4000)
        };
        let mut expected = (0, 0, 0);
        for round in 0..3i64 {
            w.execute_batch("BEGIN").unwrap();
            for id in 0..2500i64 {
                w.execute(
                    "INSERT OR REPLACE INTO t (id, body) VALUES (?1, ?2)",
                    rusqlite::params![id, row(id, round)],
                )
                .unwrap();
            }
            w.execute_batch("COMMIT").unwrap();
            expected = (2500, 2500 * 4000, 0);
            expected.2 = (0..2500i64)
                .map(|id| i64::from(row(id, round).as_bytes()[0]) * id)
                .sum();
            assert_eq!(seen(&r), expected, "round {round}");
            if round == 1 {
                let busy: i64 = w
                    .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(busy, 0);
            }
        }
        drop(w);
        assert_eq!(seen(&r), expected);
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
}

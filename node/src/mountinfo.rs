//! Parsing `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

use crate::error::{NodeError, Result};

/// Default location of the mount table.
pub const PROC_MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Unique mount id.
    pub mount_id: u32,
    /// Parent mount id.
    pub parent_id: u32,
    /// Device number `major:minor` of the filesystem.
    pub dev: (u32, u32),
    /// Root of the mount within its filesystem (for a bind of a device
    /// node, the node's path inside devtmpfs, e.g. `/loop3`).
    pub root: PathBuf,
    /// Mount point.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `noatime` ...).
    pub mount_options: Vec<String>,
    /// Filesystem type.
    pub fs_type: String,
    /// Mount source (device for block filesystems).
    pub source: String,
    /// Per-superblock options.
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// True when mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro")
    }
}

/// Parses the full text of a mountinfo file.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read_mountinfo() -> Result<Vec<MountEntry>> {
    read_mountinfo_from(Path::new(PROC_MOUNTINFO))
}

/// Reads and parses a mountinfo file at `path`.
pub fn read_mountinfo_from(path: &Path) -> Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| NodeError::io("read", path, e))?;
    parse_mountinfo(&text)
}

fn parse_line(line: &str) -> Result<MountEntry> {
    let bad = |reason| NodeError::MountInfoParse {
        line: line.to_owned(),
        reason,
    };
    let (left, right) = line
        .split_once(" - ")
        .ok_or_else(|| bad("no ` - ` separator"))?;
    let mut l = left.split(' ');
    let mut next = |what| l.next().ok_or_else(|| bad(what));
    let mount_id = next("missing mount id")?
        .parse()
        .map_err(|_| bad("bad mount id"))?;
    let parent_id = next("missing parent id")?
        .parse()
        .map_err(|_| bad("bad parent id"))?;
    let (major, minor) = next("missing major:minor")?
        .split_once(':')
        .ok_or_else(|| bad("bad major:minor"))?;
    let dev = (
        major.parse().map_err(|_| bad("bad major"))?,
        minor.parse().map_err(|_| bad("bad minor"))?,
    );
    let root = PathBuf::from(unescape(next("missing root")?));
    let mount_point = PathBuf::from(unescape(next("missing mount point")?));
    let mount_options = split_options(next("missing mount options")?);
    let mut r = right.split(' ');
    let fs_type = unescape(r.next().ok_or_else(|| bad("missing fs type"))?);
    let source = unescape(r.next().ok_or_else(|| bad("missing source"))?);
    let super_options = r.next().map(split_options).unwrap_or_default();
    Ok(MountEntry {
        mount_id,
        parent_id,
        dev,
        root,
        mount_point,
        mount_options,
        fs_type,
        source,
        super_options,
    })
}

fn split_options(s: &str) -> Vec<String> {
    s.split(',').map(unescape).collect()
}

/// Decodes the kernel's `\ooo` octal escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && is_octal(&bytes[i + 1..i + 4]) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_octal(b: &[u8]) -> bool {
    b.len() == 3 && b[0] <= b'3' && b.iter().all(|c| (b'0'..=b'7').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
36 22 7:3 / /var/lib/kubelet/plugins/staging\\040dir rw,noatime shared:20 - xfs /dev/loop3 rw,attr2
37 22 0:5 /loop3 /var/lib/kubelet/pods/p/vol\\011x ro,nosuid - devtmpfs udev rw,size=1k
38 22 0:40 / /mnt/back\\134slash rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].mount_point, Path::new("/"));
        assert_eq!(m[0].super_options, vec!["rw", "errors=remount-ro"]);
        assert_eq!(m[1].dev, (7, 3));
        assert_eq!(
            m[1].mount_point,
            Path::new("/var/lib/kubelet/plugins/staging dir")
        );
        assert_eq!(m[1].fs_type, "xfs");
        assert_eq!(m[1].source, "/dev/loop3");
        assert!(!m[1].is_read_only());
        assert_eq!(m[2].root, Path::new("/loop3"));
        assert_eq!(
            m[2].mount_point,
            Path::new("/var/lib/kubelet/pods/p/vol\tx")
        );
        assert!(m[2].is_read_only());
        assert_eq!(m[3].mount_point, Path::new("/mnt/back\\slash"));
    }

    #[test]
    fn unescape_leaves_non_escapes_alone() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\9b"), "a\\9b");
        assert_eq!(unescape("trail\\04"), "trail\\04");
        assert_eq!(unescape("\\134"), "\\");
    }

    #[test]
    fn malformed_lines_are_errors() {
        for line in [
            "garbage",
            "x 1 8:1 / / rw - ext4 /dev/a rw",
            "1 2 81 / / rw - ext4 a rw",
        ] {
            assert!(
                matches!(parse_mountinfo(line), Err(NodeError::MountInfoParse { .. })),
                "{line}"
            );
        }
    }

    #[test]
    fn reads_the_real_table() {
        let m = read_mountinfo().unwrap();
        assert!(m.iter().any(|e| e.mount_point == Path::new("/")));
    }
}

//! Where uploaded bytes live and what the server derives from them. The node
//! (`node::files`) decides who may upload and download; this module only keeps
//! bytes ([`blobs`]: on local disk, or ready ones in an S3 bucket, [`s3`],
//! named by an [`s3_url`]) and reads them ([`derive`]).

pub mod blobs;
pub mod derive;
pub mod s3;
pub mod s3_url;

/// Whether `id` is an upload id the server made: `upl_` and 26 lower-case
/// ULID characters. Checked before an id names a file on disk.
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 30
        && id.starts_with("upl_")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Whether `name` (an app id) can be a directory name under the files
/// directory: not empty, not `.` or `..`, no separator.
pub fn valid_dir_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_app_id_names_one_directory() {
        assert!(super::valid_dir_name("appr6v3w7x1y0na"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0"] {
            assert!(!super::valid_dir_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_the_servers_upload_ids_name_files() {
        assert!(super::valid_upload_id("upl_01jv5e3k8q2w7n4r6t9y1b3d5f"));
        for bad in [
            "upl_01JV5E3K8Q2W7N4R6T9Y1B3D5F",
            "upl_../../../../etc/passwd....",
            "upl_01jv5e3k8q2w7n4r6t9y1b3d5",
            "dev_01jv5e3k8q2w7n4r6t9y1b3d5f",
            "",
        ] {
            assert!(!super::valid_upload_id(bad), "{bad}");
        }
    }
}

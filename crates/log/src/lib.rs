//! One partition's log on disk. (being written)

/* The stored members of one snapshot, sorted by content hash, each row with the split the snapshot
   is of: what training and evaluation read of a gated snapshot (load_snapshot,
   include/registry/snapshots.py). The snapshot's name is a bound parameter. */
SELECT split, content_hash, label, uri, subject
FROM snapshot_images
WHERE snapshot = {{ snapshot }}
ORDER BY content_hash

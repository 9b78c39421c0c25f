/* Mark one file's row retracted, unless it is already: a second retraction changes nothing, so the
   first one's who, why and quarantine copy stay (include/registry/retract.py, the retract_upload
   DAG). Returns no rows; the values are bound, quarantined_as NULL where the file was gone. */
UPDATE image_files
SET retracted_at = current_timestamp, retracted_by = {{ retracted_by }}, retraction_reason = {{ reason }},
    quarantined_as = {{ quarantined_as }}
WHERE uri = {{ uri }} AND retracted_at IS NULL

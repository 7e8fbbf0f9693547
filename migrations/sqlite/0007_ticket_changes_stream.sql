-- Every helpdesk connector now calls its change stream `ticket-changes`; Zendesk and
-- Salesforce called it `ticket-events`. Their installations keep their schedules, pause
-- state, run history and poll positions under the new name.
--
-- A job's id is `<installation>:<stream>` and `job_runs` refer to it by that id (foreign keys
-- are on), so each job is copied under its new id, its runs moved over, and the old row
-- removed. Only installations of the two plugins that used the old name are touched, and
-- only where the new name is free.

CREATE TEMP TABLE renamed_streams AS
SELECT j.installation_id, j.id AS old_id, j.installation_id || ':ticket-changes' AS new_id
FROM jobs j
JOIN installations i ON i.id = j.installation_id
WHERE j.stream = 'ticket-events'
  AND i.plugin_id IN ('zendesk', 'salesforce')
  AND NOT EXISTS (
      SELECT 1 FROM jobs taken
      WHERE taken.installation_id = j.installation_id AND taken.stream = 'ticket-changes')
  AND NOT EXISTS (SELECT 1 FROM jobs taken WHERE taken.id = j.installation_id || ':ticket-changes');

INSERT INTO jobs (id, installation_id, stream, schedule, time_zone, paused, next_run_at,
                  running_since, lease_owner, lease_until)
SELECT r.new_id, j.installation_id, 'ticket-changes', j.schedule, j.time_zone, j.paused,
       j.next_run_at, j.running_since, j.lease_owner, j.lease_until
FROM jobs j JOIN renamed_streams r ON r.old_id = j.id;

UPDATE job_runs
SET job_id = (SELECT r.new_id FROM renamed_streams r WHERE r.old_id = job_runs.job_id)
WHERE job_id IN (SELECT old_id FROM renamed_streams);

DELETE FROM jobs WHERE id IN (SELECT old_id FROM renamed_streams);

UPDATE cursors
SET stream = 'ticket-changes'
WHERE stream = 'ticket-events'
  AND installation_id IN (SELECT id FROM installations WHERE plugin_id IN ('zendesk', 'salesforce'))
  AND NOT EXISTS (
      SELECT 1 FROM cursors taken
      WHERE taken.installation_id = cursors.installation_id AND taken.stream = 'ticket-changes');

DROP TABLE renamed_streams;

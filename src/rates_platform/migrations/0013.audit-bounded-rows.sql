-- depends: 0012.rotation-lock-strict-verifiers
-- Every writer chooses part of its rows (a request's reason, a rotation's version, the
-- API's details), and a person, the rotator or the API's login could append rows of
-- any size (a 50 MB one was measured) that every `audit verify` must then read. Bounded
-- here, for all writers at once; rows already written are left as they are (NOT VALID:
-- they stay in the hash chain unchanged).
ALTER TABLE audit.events ADD CONSTRAINT events_bounded
    CHECK (octet_length(details::text) <= 65536 AND octet_length(target) <= 256) NOT VALID;

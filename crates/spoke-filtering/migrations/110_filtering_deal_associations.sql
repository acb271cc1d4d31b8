-- Deals get their companies from HubSpot's associations (v4 batch read), not from the
-- `associatedcompanyid` property: one attempt_deals row per (deal, associated company). `linked`
-- marks the one company a deal is linked to company profiles through (its primary company, else
-- the lowest id); `require_deals` counts every associated company.
ALTER TABLE attempt_deals ADD COLUMN linked BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE attempt_deals DROP CONSTRAINT attempt_deals_pkey;
ALTER TABLE attempt_deals ADD PRIMARY KEY (attempt_id, deal_id, company_id);

-- Deals are linked to company matches by a hash join on the unnested company ids; the GIN index
-- is no longer read and only slowed down every company match write.
DROP INDEX IF EXISTS matches_company_ids;

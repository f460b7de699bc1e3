-- Klaviyo's catalogs and coupons, added through the catalogue:
--   klaviyo_catalog_items            GET /api/catalog-items?include=variants: a snapshot each run (no filter on a
--                                    timestamp), guarded on Klaviyo's `updated`;
--   klaviyo_catalog_variants         each item's variants, from the same responses (no request of their own); a
--                                    variant a re-read item no longer lists soft-deleted;
--   klaviyo_catalog_categories       GET /api/catalog-categories: a snapshot each run, guarded on `updated`;
--   klaviyo_catalog_item_categories  which items each category holds (GET /api/catalog-categories/{id}/
--                                    relationships/items, ids only), read under every live category each run;
--   klaviyo_coupons                  GET /api/coupons: a snapshot each run (a coupon has no timestamp);
--   klaviyo_coupon_codes             GET /api/coupons/{id}/coupon-codes, read under every live coupon each run.
-- Joins: catalog_variants.item_id -> catalog_items.id; catalog_item_categories.item_id -> catalog_items.id and
-- .category_id -> catalog_categories.id; coupon_codes.coupon_id -> coupons.id, .profile_id -> klaviyo_profiles.id.
-- Catalog ids are compound ({integration}:::{catalog}:::{external_id}, e.g. $custom:::$default:::SKU-1).
CREATE TABLE klaviyo_catalog_items (
    id                   text COLLATE "C" NOT NULL,
    account_id           text COLLATE "C" NOT NULL,
    external_id          text,
    title                text,
    description          text,
    price                numeric,
    url                  text,
    image_full_url       text,
    image_thumbnail_url  text,
    images               jsonb,
    custom_metadata      jsonb,
    published            boolean,
    created_date         timestamptz,
    updated_date         timestamptz,
    metadata             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_synced_at       timestamptz,
    deleted_at           timestamptz,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE klaviyo_catalog_variants (
    id                   text COLLATE "C" NOT NULL,
    account_id           text COLLATE "C" NOT NULL,
    item_id              text COLLATE "C",
    sku                  text,
    external_id          text,
    title                text,
    description          text,
    price                numeric,
    url                  text,
    image_full_url       text,
    image_thumbnail_url  text,
    images               jsonb,
    custom_metadata      jsonb,
    published            boolean,
    inventory_policy     integer,
    inventory_quantity   numeric,
    created_date         timestamptz,
    updated_date         timestamptz,
    metadata             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_synced_at       timestamptz,
    deleted_at           timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_catalog_variants_item_idx ON klaviyo_catalog_variants (account_id, item_id);

CREATE TABLE klaviyo_catalog_categories (
    id                   text COLLATE "C" NOT NULL,
    account_id           text COLLATE "C" NOT NULL,
    external_id          text,
    name                 text,
    updated_date         timestamptz,
    metadata             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_synced_at       timestamptz,
    deleted_at           timestamptz,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE klaviyo_catalog_item_categories (
    account_id           text COLLATE "C" NOT NULL,
    category_id          text COLLATE "C" NOT NULL,
    item_id              text COLLATE "C" NOT NULL,
    metadata             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_synced_at       timestamptz,
    deleted_at           timestamptz,
    PRIMARY KEY (account_id, category_id, item_id)
);
-- "Which categories is this item in": the key serves the other way round.
CREATE INDEX klaviyo_catalog_item_categories_item_idx ON klaviyo_catalog_item_categories (account_id, item_id);

CREATE TABLE klaviyo_coupons (
    id                     text COLLATE "C" NOT NULL,
    account_id             text COLLATE "C" NOT NULL,
    external_id            text,
    description            text,
    monitor_configuration  jsonb,
    low_balance_threshold  integer,
    metadata               jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    last_synced_at         timestamptz,
    deleted_at             timestamptz,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE klaviyo_coupon_codes (
    id                   text COLLATE "C" NOT NULL,
    account_id           text COLLATE "C" NOT NULL,
    coupon_id            text COLLATE "C",
    unique_code          text,
    status               text,
    expires_at           timestamptz,
    profile_id           text COLLATE "C",
    metadata             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_synced_at       timestamptz,
    deleted_at           timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_coupon_codes_coupon_idx ON klaviyo_coupon_codes (account_id, coupon_id);
CREATE INDEX klaviyo_coupon_codes_profile_idx ON klaviyo_coupon_codes (profile_id);

COMMENT ON TABLE klaviyo_catalog_items IS 'Klaviyo catalog items (GET /api/catalog-items): a snapshot each run (Klaviyo cannot filter items by time); items Klaviyo no longer lists get deleted_at from the reconciliation.';
COMMENT ON COLUMN klaviyo_catalog_items.id IS 'Klaviyo catalog item id: {integration}:::{catalog}:::{external_id} (e.g. $custom:::$default:::SKU-1).';
COMMENT ON COLUMN klaviyo_catalog_items.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_catalog_items.external_id IS 'The item''s id in the shop or feed it comes from.';
COMMENT ON COLUMN klaviyo_catalog_items.title IS 'Item title.';
COMMENT ON COLUMN klaviyo_catalog_items.description IS 'Item description.';
COMMENT ON COLUMN klaviyo_catalog_items.price IS 'The price shown for the item in emails (in the account''s currency; variants carry their own).';
COMMENT ON COLUMN klaviyo_catalog_items.url IS 'The item''s page on the shop.';
COMMENT ON COLUMN klaviyo_catalog_items.image_full_url IS 'URL of the item''s full image.';
COMMENT ON COLUMN klaviyo_catalog_items.image_thumbnail_url IS 'URL of the item''s thumbnail.';
COMMENT ON COLUMN klaviyo_catalog_items.images IS 'URLs of the item''s images (JSON array).';
COMMENT ON COLUMN klaviyo_catalog_items.custom_metadata IS 'The shop''s own flat JSON about the item (up to 100 kB).';
COMMENT ON COLUMN klaviyo_catalog_items.published IS 'Whether the item is published (shown in product feeds and blocks).';
COMMENT ON COLUMN klaviyo_catalog_items.created_date IS 'When the item was created in Klaviyo (UTC).';
COMMENT ON COLUMN klaviyo_catalog_items.updated_date IS 'When the item was last updated in Klaviyo (UTC); guards upserts so older data never overwrites newer.';
COMMENT ON COLUMN klaviyo_catalog_items.metadata IS 'The resource as Klaviyo sent it (attributes and relationships), new fields included; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_catalog_items.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_catalog_items.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_catalog_items.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_catalog_items.deleted_at IS 'When the reconciliation found the item gone from Klaviyo; NULL while it exists.';

COMMENT ON TABLE klaviyo_catalog_variants IS 'Klaviyo catalog variants (sizes, colours, ... of an item), read with their items (include=variants). A variant a re-read item no longer lists gets deleted_at.';
COMMENT ON COLUMN klaviyo_catalog_variants.id IS 'Klaviyo catalog variant id: {integration}:::{catalog}:::{external_id}.';
COMMENT ON COLUMN klaviyo_catalog_variants.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_catalog_variants.item_id IS 'The item the variant belongs to (klaviyo_catalog_items.id).';
COMMENT ON COLUMN klaviyo_catalog_variants.sku IS 'The variant''s stock keeping unit.';
COMMENT ON COLUMN klaviyo_catalog_variants.external_id IS 'The variant''s id in the shop or feed it comes from.';
COMMENT ON COLUMN klaviyo_catalog_variants.title IS 'Variant title.';
COMMENT ON COLUMN klaviyo_catalog_variants.description IS 'Variant description.';
COMMENT ON COLUMN klaviyo_catalog_variants.price IS 'The price shown for the variant in emails.';
COMMENT ON COLUMN klaviyo_catalog_variants.url IS 'The variant''s page on the shop.';
COMMENT ON COLUMN klaviyo_catalog_variants.image_full_url IS 'URL of the variant''s full image.';
COMMENT ON COLUMN klaviyo_catalog_variants.image_thumbnail_url IS 'URL of the variant''s thumbnail.';
COMMENT ON COLUMN klaviyo_catalog_variants.images IS 'URLs of the variant''s images (JSON array).';
COMMENT ON COLUMN klaviyo_catalog_variants.custom_metadata IS 'The shop''s own flat JSON about the variant.';
COMMENT ON COLUMN klaviyo_catalog_variants.published IS 'Whether the variant is published.';
COMMENT ON COLUMN klaviyo_catalog_variants.inventory_policy IS 'Feed visibility: 1 = left out of product feeds and blocks when out of stock; 0 or 2 = shown whatever the stock.';
COMMENT ON COLUMN klaviyo_catalog_variants.inventory_quantity IS 'Quantity in stock.';
COMMENT ON COLUMN klaviyo_catalog_variants.created_date IS 'When the variant was created in Klaviyo (UTC).';
COMMENT ON COLUMN klaviyo_catalog_variants.updated_date IS 'When the variant was last updated in Klaviyo (UTC); guards upserts so older data never overwrites newer.';
COMMENT ON COLUMN klaviyo_catalog_variants.metadata IS 'The resource as Klaviyo sent it (attributes and relationships), new fields included; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_catalog_variants.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_catalog_variants.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_catalog_variants.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_catalog_variants.deleted_at IS 'When the variant was found gone from Klaviyo (its item no longer lists it, or the item was deleted); NULL while it exists.';

COMMENT ON TABLE klaviyo_catalog_categories IS 'Klaviyo catalog categories (GET /api/catalog-categories): a snapshot each run; categories Klaviyo no longer lists get deleted_at from the reconciliation.';
COMMENT ON COLUMN klaviyo_catalog_categories.id IS 'Klaviyo catalog category id: {integration}:::{catalog}:::{external_id}.';
COMMENT ON COLUMN klaviyo_catalog_categories.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_catalog_categories.external_id IS 'The category''s id in the shop or feed it comes from.';
COMMENT ON COLUMN klaviyo_catalog_categories.name IS 'Category name.';
COMMENT ON COLUMN klaviyo_catalog_categories.updated_date IS 'When the category was last updated in Klaviyo (UTC); guards upserts so older data never overwrites newer.';
COMMENT ON COLUMN klaviyo_catalog_categories.metadata IS 'The resource as Klaviyo sent it (attributes and relationships), new fields included; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_catalog_categories.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_catalog_categories.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_catalog_categories.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_catalog_categories.deleted_at IS 'When the reconciliation found the category gone from Klaviyo; NULL while it exists.';

COMMENT ON TABLE klaviyo_catalog_item_categories IS 'Which catalog items each category holds: one row per (category, item), from GET /api/catalog-categories/{id}/relationships/items under every live category each run. A link the category no longer lists (the item moved or went) gets deleted_at.';
COMMENT ON COLUMN klaviyo_catalog_item_categories.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_catalog_item_categories.category_id IS 'The category (klaviyo_catalog_categories.id).';
COMMENT ON COLUMN klaviyo_catalog_item_categories.item_id IS 'An item the category holds (klaviyo_catalog_items.id).';
COMMENT ON COLUMN klaviyo_catalog_item_categories.metadata IS 'The resource identifier as Klaviyo listed it (its type, and anything else it carries), less the id.';
COMMENT ON COLUMN klaviyo_catalog_item_categories.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_catalog_item_categories.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_catalog_item_categories.last_synced_at IS 'When a sync last wrote or confirmed this row.';
COMMENT ON COLUMN klaviyo_catalog_item_categories.deleted_at IS 'When the category was read without this item (or the category was deleted); NULL while it holds it.';

COMMENT ON TABLE klaviyo_coupons IS 'Klaviyo coupons (GET /api/coupons): a snapshot each run (Klaviyo gives coupons no timestamp); coupons Klaviyo no longer lists get deleted_at from the reconciliation.';
COMMENT ON COLUMN klaviyo_coupons.id IS 'Klaviyo coupon id (the same as its external id, e.g. 10OFF).';
COMMENT ON COLUMN klaviyo_coupons.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_coupons.external_id IS 'The coupon''s id in the shop integration (Shopify, Magento, ...).';
COMMENT ON COLUMN klaviyo_coupons.description IS 'Coupon description.';
COMMENT ON COLUMN klaviyo_coupons.monitor_configuration IS 'The coupon''s monitor configuration as Klaviyo sends it (e.g. {"low_balance_threshold": 500}).';
COMMENT ON COLUMN klaviyo_coupons.low_balance_threshold IS 'How few unassigned codes left count as a low balance (monitor_configuration.low_balance_threshold); NULL when not monitored.';
COMMENT ON COLUMN klaviyo_coupons.metadata IS 'The resource as Klaviyo sent it, new fields included; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_coupons.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_coupons.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_coupons.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_coupons.deleted_at IS 'When the reconciliation found the coupon gone from Klaviyo; NULL while it exists.';

COMMENT ON TABLE klaviyo_coupon_codes IS 'Klaviyo coupon codes: the unique codes of each coupon (GET /api/coupons/{id}/coupon-codes), read under every live coupon each run. A code its coupon no longer lists gets deleted_at.';
COMMENT ON COLUMN klaviyo_coupon_codes.id IS 'Klaviyo coupon code id (the coupon id and the unique code, e.g. 10OFF-ASD325FHK324UJDOI2M3JNES99).';
COMMENT ON COLUMN klaviyo_coupon_codes.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_coupon_codes.coupon_id IS 'The coupon (klaviyo_coupons.id).';
COMMENT ON COLUMN klaviyo_coupon_codes.unique_code IS 'The code a customer enters.';
COMMENT ON COLUMN klaviyo_coupon_codes.status IS 'UNASSIGNED, PROCESSING, ASSIGNED_TO_PROFILE, USED, VERSION_NOT_ACTIVE or DELETING.';
COMMENT ON COLUMN klaviyo_coupon_codes.expires_at IS 'When the code expires (UTC; Klaviyo sets a year when none is given).';
COMMENT ON COLUMN klaviyo_coupon_codes.profile_id IS 'The profile the code is assigned to (klaviyo_profiles.id); NULL while unassigned.';
COMMENT ON COLUMN klaviyo_coupon_codes.metadata IS 'The resource as Klaviyo sent it (attributes and relationships), new fields included; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_coupon_codes.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_coupon_codes.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_coupon_codes.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_coupon_codes.deleted_at IS 'When the code was found gone from Klaviyo (its coupon no longer lists it, or the coupon was deleted); NULL while it exists.';

-- The BI role reads them (006's default privileges already grant it; said again in case another role runs
-- this migration).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        GRANT SELECT ON klaviyo_catalog_items, klaviyo_catalog_variants, klaviyo_catalog_categories,
            klaviyo_catalog_item_categories, klaviyo_coupons, klaviyo_coupon_codes TO klaviyo_bi;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi was not granted SELECT on the new tables: the migrating user may not grant';
END
$$;

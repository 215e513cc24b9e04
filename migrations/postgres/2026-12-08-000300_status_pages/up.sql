-- Public status pages (DESIGN.md, "Lists, tags, metrics, API description,
-- dashboard, status pages"): a slug, a title and the services listed.
CREATE TABLE status_pages (
    id         BIGSERIAL PRIMARY KEY,
    slug       TEXT    NOT NULL UNIQUE,
    title      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- The services a page lists, in the order given. Only these are public.
-- A deleted service (or page) leaves by the cascade, in the delete's own
-- transaction: nothing can show a service that is gone.
CREATE TABLE status_page_services (
    page_id    BIGINT  NOT NULL REFERENCES status_pages (id) ON DELETE CASCADE,
    service_id BIGINT  NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    PRIMARY KEY (page_id, service_id)
);
-- For the cascade from services: without it each service delete scans.
CREATE INDEX status_page_services_by_service ON status_page_services (service_id);

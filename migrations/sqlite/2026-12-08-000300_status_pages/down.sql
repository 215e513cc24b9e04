DROP TABLE status_page_services;
DROP TABLE status_pages;

"""The incident console: alarms and their evidence on screen, people's decisions recorded
(REST API, web pages, users and roles, evidence over HTTP)."""

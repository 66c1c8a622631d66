"""Grafana dashboards as code, provisioning files and push/export."""

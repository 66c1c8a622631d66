// The incident's place on a map, from the tile server the site configured.
"use strict";
(function () {
  const el = document.getElementById("map");
  if (!el || typeof L === "undefined") return;
  const at = [Number(el.dataset.lat), Number(el.dataset.lon)];
  const map = L.map(el).setView(at, 16);
  L.tileLayer(el.dataset.tiles, { maxZoom: 19 }).addTo(map);
  L.marker(at).addTo(map).bindPopup(el.dataset.label || "");
})();

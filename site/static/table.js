// Sortable tables and toggles. Cells carry their sort key in data-value; numbers sort as
// numbers, empty values last. A header marked data-lower-better sorts ascending first.
(function () {
  function key(cell, numeric) {
    var v = cell ? cell.getAttribute("data-value") : "";
    if (v === null || v === "" || v === "nan" || v === "None") return null;
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(table, index, th) {
    var numeric = th.getAttribute("data-type") !== "text";
    var lowerBetter = th.hasAttribute("data-lower-better");
    var current = th.getAttribute("aria-sort");
    var ascending = current ? current === "descending" : (numeric ? lowerBetter : true);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      if (numeric && isNaN(x)) return 1;
      if (numeric && isNaN(y)) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.addEventListener("click", function () { sortBy(table, index, th); });
    });
  });
  document.querySelectorAll("input[data-toggle=all-runs]").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll("tr.extra-run").forEach(function (row) { row.hidden = !box.checked; });
    });
  });
})();

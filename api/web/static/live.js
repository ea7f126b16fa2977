// Live approvals queue: the server sends the re-rendered queue as a
// server-sent event whenever the pending approvals change; it replaces the
// one on the page. The HTML comes from our own origin, rendered (and
// escaped) by the server's templates; the Trusted Types policy below is the
// only way the page's CSP lets a script turn a string into HTML.
'use strict';
(function () {
  var host = document.getElementById('queue-host');
  var status = document.getElementById('live-status');
  if (!host || !window.EventSource || !window.DOMParser) {
    if (status) status.textContent = 'Reload the page to see new approvals';
    return;
  }
  var policy = window.trustedTypes
    ? window.trustedTypes.createPolicy('oakallow', { createHTML: function (s) { return s; } })
    : { createHTML: function (s) { return s; } };
  var events = new EventSource(host.dataset.events);
  events.addEventListener('queue', function (ev) {
    var doc = new DOMParser().parseFromString(policy.createHTML(ev.data), 'text/html');
    var next = doc.getElementById('queue');
    var current = document.getElementById('queue');
    if (next && current) current.replaceWith(document.adoptNode(next));
    status.textContent = 'Updates live';
  });
  events.addEventListener('signed-out', function () {
    events.close();
    window.location.assign('/sign-in?next=' + encodeURIComponent(window.location.pathname));
  });
  events.onerror = function () { status.textContent = 'Reconnecting…'; };
})();

// Copy buttons: a button with data-copy="ID" copies the text of the element
// with that id. Text only: nothing is parsed as HTML.
'use strict';
(function () {
  document.addEventListener('click', function (ev) {
    var button = ev.target.closest('button[data-copy]');
    if (!button) return;
    var source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent).then(function () {
      var label = button.textContent;
      button.textContent = 'Copied';
      window.setTimeout(function () { button.textContent = label; }, 1500);
    });
  });
})();

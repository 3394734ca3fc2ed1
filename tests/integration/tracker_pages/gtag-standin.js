// Stands in for Google's gtag.js in the tests (no network to Google here). Like
// GTM's data layer helper, it wraps dataLayer.push, calls the push it found
// first, and processes what was queued before it loaded; it records the first
// argument of everything it saw in window.gaSeen.
(function () {
  var dl = (window.dataLayer = window.dataLayer || []);
  window.gaSeen = [];
  function see(item) {
    window.gaSeen.push(item && item.length !== undefined ? String(item[0]) : 'object');
  }
  dl.forEach(see);
  var previous = dl.push;
  dl.push = function () {
    var result = previous.apply(dl, arguments);
    for (var i = 0; i < arguments.length; i++) see(arguments[i]);
    return result;
  };
})();

// Passkeys in the browser. A form marked data-webauthn="create" (enroll a
// passkey) or "get" (sign in, confirm a decision, new recovery codes or a
// passkey's removal) is not sent as it is: on submit this script asks the
// API for WebAuthn options (POST to the form's data-options URL), hands them
// to navigator.credentials, puts the ceremony id and the authenticator's
// answer, JSON-encoded, into the form's hidden fields, and then sends the
// form. A form also marked data-confirm (adding another passkey) first runs a
// "get" ceremony with the options of that URL, so an existing passkey
// confirms the change. The server verifies everything; this script only
// carries bytes between the API and the authenticator.
// No HTML is built from strings, so no Trusted Types policy is needed.
'use strict';
(function () {
  function b64u(buf) {
    var bytes = new Uint8Array(buf), s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function unb64u(s) {
    var bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function decodeList(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, { id: unb64u(c.id) }); });
  }
  // The API's options are WebAuthn's JSON forms: binary members are base64url.
  function creationOptions(o) {
    var pk = Object.assign({}, o);
    pk.challenge = unb64u(o.challenge);
    pk.user = Object.assign({}, o.user, { id: unb64u(o.user.id) });
    pk.excludeCredentials = decodeList(o.excludeCredentials);
    return pk;
  }
  function requestOptions(o) {
    var pk = Object.assign({}, o);
    pk.challenge = unb64u(o.challenge);
    pk.allowCredentials = decodeList(o.allowCredentials);
    return pk;
  }
  function credentialJSON(c) {
    var r = c.response, out = {
      id: c.id, rawId: b64u(c.rawId), type: c.type,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
      response: { clientDataJSON: b64u(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = b64u(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = b64u(r.authenticatorData);
      out.response.signature = b64u(r.signature);
      if (r.userHandle) out.response.userHandle = b64u(r.userHandle);
    }
    return JSON.stringify(out);
  }
  function say(form, msg) {
    var el = form.querySelector('.webauthn-error');
    if (el) { el.textContent = msg; el.hidden = !msg; }
  }
  function busy(form, on) {
    form.querySelectorAll('button').forEach(function (b) { b.disabled = on; });
  }
  // Why the browser refused, in words a person can act on.
  function refusal(err) {
    if (err && err.name === 'NotAllowedError') return 'The passkey prompt was closed or timed out. Try again.';
    if (err && err.name === 'InvalidStateError') return 'This authenticator already holds a passkey for your account.';
    return (err && err.message) || 'The passkey step failed. Try again.';
  }

  // ceremony asks url for options (POST body), runs navigator.credentials
  // (create or get) with them and puts the ceremony id and the answer into
  // the form's hidden fields named prefix + ceremony_id / credential.
  function ceremony(form, url, kind, body, prefix) {
    var headers = { 'Content-Type': 'application/json', 'Accept': 'application/json' };
    if (form.dataset.org) headers['X-Oakallow-Org'] = form.dataset.org;
    return fetch(url, { method: 'POST', credentials: 'same-origin', headers: headers, body: JSON.stringify(body) })
      .then(function (res) {
        return res.json().then(function (j) {
          if (!res.ok) throw new Error(j.detail || ('The server refused (' + res.status + ').'));
          return j;
        });
      })
      .then(function (opts) {
        form.elements[prefix + 'ceremony_id'].value = opts.ceremony_id;
        var call = kind === 'create'
          ? navigator.credentials.create({ publicKey: creationOptions(opts.publicKey) })
          : navigator.credentials.get({ publicKey: requestOptions(opts.publicKey) });
        return call.catch(function (err) { throw new Error(refusal(err)); });
      })
      .then(function (cred) {
        form.elements[prefix + 'credential'].value = credentialJSON(cred);
      });
  }

  // A form marked data-confirm (adding a passkey to an account that has
  // one) first confirms the change with an existing passkey: a get()
  // ceremony with the options of that URL, answered into confirm_ fields.
  function start(form, submitter) {
    var body = {};
    if (submitter && submitter.name) {
      body[submitter.name] = submitter.value;
      var field = form.querySelector('input[type=hidden][name="' + submitter.name + '"]');
      if (field) field.value = submitter.value;
    }
    say(form, '');
    busy(form, true);
    var confirmed = form.dataset.confirm
      ? ceremony(form, form.dataset.confirm, 'get', {}, 'confirm_')
      : Promise.resolve();
    confirmed
      .then(function () { return ceremony(form, form.dataset.options, form.dataset.webauthn, body, ''); })
      .then(function () { form.submit(); })
      .catch(function (err) {
        busy(form, false);
        say(form, err.message);
      });
  }

  document.querySelectorAll('form[data-webauthn]').forEach(function (form) {
    if (!window.PublicKeyCredential || !navigator.credentials) {
      say(form, 'This browser cannot use passkeys. Use a current browser, or another device.');
      busy(form, true);
      return;
    }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      start(form, ev.submitter);
    });
  });
})();

// The page of `cassava-edge serve`: pick a photo, POST it to v1/classify, show the answer by its status.
// Plain DOM code, no framework and no build step. Server text is always set with textContent, never as HTML.
"use strict";

const KEY_STORAGE = "cassava-edge-api-key";
const RETAKE_TIPS = ["one leaf filling the frame", "in focus", "in daylight, without harsh shadows"];

const page = {
  form: document.getElementById("photo-form"),
  input: document.getElementById("photo"),
  preview: document.getElementById("preview"),
  check: document.getElementById("check"),
  keyForm: document.getElementById("key-form"),
  keyMessage: document.getElementById("key-message"),
  keyInput: document.getElementById("api-key"),
  rememberKey: document.getElementById("remember-key"),
  result: document.getElementById("result"),
  modelLine: document.getElementById("model-line"),
};

// label -> full name, from GET v1/model (the model's metadata is the only place the names live).
let fullNames = {};
// A photo whose request was refused for want of a key: sent again once the key is entered.
let waitingPhoto = null;

// -- API key ---------------------------------------------------------------------------------------------------

function storedKey() {
  return localStorage.getItem(KEY_STORAGE) || sessionStorage.getItem(KEY_STORAGE) || "";
}

function saveKey(key, remember) {
  localStorage.removeItem(KEY_STORAGE);
  sessionStorage.removeItem(KEY_STORAGE);
  (remember ? localStorage : sessionStorage).setItem(KEY_STORAGE, key);
}

function authHeaders() {
  const key = storedKey();
  return key ? { Authorization: "Bearer " + key } : {};
}

function askForKey(message) {
  page.keyMessage.textContent = message;
  page.keyForm.hidden = false;
  page.keyInput.value = "";
  page.keyInput.focus();
}

page.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = page.keyInput.value.trim();
  if (!key) {
    page.keyInput.focus();
    return;
  }
  saveKey(key, page.rememberKey.checked);
  page.keyForm.hidden = true;
  loadModel();
  if (waitingPhoto) {
    const photo = waitingPhoto;
    waitingPhoto = null;
    classify(photo);
  }
});

// -- model -----------------------------------------------------------------------------------------------------

async function loadModel() {
  let response;
  try {
    response = await fetch("v1/model", { headers: authHeaders() });
  } catch (error) {
    page.modelLine.textContent = "The service cannot be reached.";
    return;
  }
  if (response.status === 401) {
    askForKey(storedKey() ? "That API key was refused. Enter it again." : "This service needs an API key.");
    return;
  }
  if (!response.ok) return;
  const info = await response.json();
  const metadata = info.metadata || {};
  const labels = metadata.labels || [];
  const names = metadata.label_names || [];
  fullNames = {};
  labels.forEach((label, index) => { fullNames[label] = names[index] || label; });
  const file = String(info.model || "").split(/[\\/]/).pop();
  page.modelLine.textContent = file ? "Model " + file + (metadata.precision ? " (" + metadata.precision + ")" : "") : "";
}

function fullName(label) {
  const name = fullNames[label] || label;
  return name === label ? name : name + " (" + label + ")";
}

// -- photo -----------------------------------------------------------------------------------------------------

page.input.addEventListener("change", () => {
  const photo = page.input.files[0];
  if (page.preview.src) URL.revokeObjectURL(page.preview.src);
  if (!photo) {
    page.preview.hidden = true;
    page.preview.removeAttribute("src");
    page.check.disabled = true;
    return;
  }
  page.preview.src = URL.createObjectURL(photo);
  page.preview.hidden = false;
  page.check.disabled = false;
  showNothing();
});

// A file the browser cannot show (not an image, or HEIC on most browsers) is still sent: the service says why.
page.preview.addEventListener("error", () => { page.preview.hidden = true; });

page.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const photo = page.input.files[0];
  if (photo) classify(photo);
});

async function classify(photo) {
  showBusy();
  const body = new FormData();
  body.append("image", photo, photo.name || "photo");
  let response;
  try {
    response = await fetch("v1/classify", { method: "POST", body: body, headers: authHeaders() });
  } catch (error) {
    showFailed("The service cannot be reached. Check the connection to the box and try again.");
    return;
  } finally {
    page.check.disabled = false;
  }
  if (response.status === 401) {
    waitingPhoto = photo;
    showNothing();
    askForKey(storedKey() ? "That API key was refused. Enter it again." : "This service needs an API key.");
    return;
  }
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null;
  }
  // A result row, whether the request succeeded or the photo failed (422 carries a failed row).
  if (data && typeof data.status === "string" && ("error" in data || "probabilities" in data)) {
    showRow(data);
    return;
  }
  showFailed(httpReason(response, data));
}

// Why a request that brought back no result row failed, in one line.
function httpReason(response, data) {
  let detail = data && (data.error || data.detail);
  if (Array.isArray(detail)) detail = detail.map((item) => item.msg || String(item)).join("; ");
  if (detail && typeof detail !== "string") detail = JSON.stringify(detail);
  const fallback = {
    413: "The photo is too large for this service.",
    415: "The service does not accept this kind of file.",
    422: "The service could not read this photo.",
    429: "Too many photos at once.",
    503: "The service is busy.",
    504: "The service took too long to answer.",
  }[response.status] || "The service answered with an error (HTTP " + response.status + ").";
  let reason = detail || fallback;
  const retryAfter = response.headers.get("Retry-After");
  if (retryAfter && (response.status === 503 || response.status === 429)) {
    reason += " Try again in " + retryAfter + " s.";
  }
  return reason;
}

// -- rendering -------------------------------------------------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(probability) {
  const value = Math.round(probability * 100);
  return value === 0 && probability > 0 ? "<1%" : value + "%";
}

function setResult(status, nodes) {
  page.result.dataset.status = status;
  page.result.setAttribute("aria-busy", status === "busy" ? "true" : "false");
  page.result.replaceChildren(...nodes);
  // On a phone the answer is below the preview: bring it into view (no animation, for reduced-motion users too).
  if (nodes.length && status !== "busy") page.result.scrollIntoView({ block: "nearest" });
}

function showNothing() {
  setResult("none", []);
}

function showBusy() {
  page.check.disabled = true;
  setResult("busy", [element("p", "diagnosis", "Checking the photo…")]);
}

function showFailed(reason) {
  setResult("failed", [
    element("h2", "", "Could not check this photo"),
    element("p", "error", reason),
    element("p", "", "Choose another photo, or try again."),
  ]);
}

// The row's best class: its label when ok, otherwise the first of top_k or the highest probability.
function bestClass(row) {
  const probabilities = row.probabilities || {};
  let label = row.label;
  if (!label && Array.isArray(row.top_k) && row.top_k.length) {
    const first = row.top_k[0];
    label = Array.isArray(first) ? first[0] : first.label;
  }
  if (!label) {
    label = Object.keys(probabilities).reduce((a, b) => (probabilities[b] > probabilities[a] ? b : a), undefined);
  }
  return label;
}

function bars(probabilities, top) {
  const list = element("ul", "bars");
  list.setAttribute("aria-label", "Probability of each class");
  Object.entries(probabilities)
    .sort((a, b) => b[1] - a[1])
    .forEach(([label, probability]) => {
      const item = element("li", label === top ? "top" : "");
      item.append(element("span", "name", fullName(label)), element("span", "value", percent(probability)));
      const track = element("span", "track");
      track.setAttribute("aria-hidden", "true");
      const fill = element("span", "fill");
      fill.style.display = "block";
      fill.style.width = Math.max(0, Math.min(100, probability * 100)).toFixed(1) + "%";
      track.append(fill);
      item.append(track);
      list.append(item);
    });
  return list;
}

function retakeAdvice() {
  const tips = element("ul", "advice");
  RETAKE_TIPS.forEach((tip) => tips.append(element("li", "", tip)));
  return [element("p", "", "Retake the photo:"), tips];
}

function showRow(row) {
  const probabilities = row.probabilities || {};
  if (row.status === "ok") {
    setResult("ok", [
      element("h2", "", "Diagnosis"),
      element("p", "diagnosis", fullName(row.label)),
      element("p", "confidence", "Confidence " + percent(row.confidence) + " (calibrated)"),
      bars(probabilities, row.label),
    ]);
  } else if (row.status === "uncertain") {
    const label = bestClass(row);
    setResult("uncertain", [
      element("h2", "", "Not sure"),
      element("p", "diagnosis", "Probably " + fullName(label)),
      element("p", "confidence", "Confidence " + percent(row.confidence) + ": too low for a diagnosis."),
      ...retakeAdvice(),
      bars(probabilities, label),
    ]);
  } else if (row.status === "not_cassava") {
    setResult("not_cassava", [
      element("h2", "", "Not a cassava leaf"),
      element("p", "diagnosis", "This photo does not look like a cassava leaf."),
      element("p", "", "Take a photo of one cassava leaf filling the frame."),
    ]);
  } else {
    showFailed(row.error || "The photo could not be classified.");
  }
}

loadModel();

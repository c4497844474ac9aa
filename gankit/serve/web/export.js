// The page of `gankit web-export`: runs model.onnx in the browser with onnxruntime-web
// (WebAssembly, one thread) and draws the grid. model.json carries what the page needs
// from the model's card. The latent comes from a small seeded generator of this page
// (mulberry32, then Box-Muller for normal noise), not numpy's: the same latent gives the
// same pixels as Python onnxruntime, within one grey level.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("grid");
  const status = $("status");
  const SIZE = 28;
  let card = null;
  let session = null;
  let last = null;

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function mulberry32(seed) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function latent(count, seed) {
    const next = mulberry32(seed);
    const z = new Float32Array(count * card.z_dim);
    if (card.noise === "uniform") {
      for (let i = 0; i < z.length; i++) z[i] = 2 * next() - 1;
      return z;
    }
    for (let i = 0; i < z.length; i += 2) {
      const u = 1 - next(); // (0, 1]: log(u) is finite
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      z[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < z.length) z[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    return z;
  }

  // As gankit.images.to_uint8: scale value_range to 0-255, clip, round half to even.
  function toUint8(values) {
    const [low, high] = card.value_range;
    const out = new Uint8Array(values.length);
    const k = 255 / (high - low);
    for (let i = 0; i < values.length; i++) {
      let x = (values[i] - low) * k;
      x = Number.isNaN(x) ? 0 : Math.min(255, Math.max(0, x));
      const f = Math.floor(x);
      const d = x - f;
      out[i] = d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
    }
    return out;
  }

  async function draw(digit) {
    for (const b of $("digits").querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b.dataset.digit === String(digit)));
    }
    const n = Math.max(1, Math.min(256, parseInt($("n").value, 10) || 1));
    const seed = Math.max(0, Math.min(4294967295, parseInt($("seed").value, 10) || 0));
    canvas.dataset.state = "loading";
    say("drawing...");
    try {
      const z = latent(n, seed);
      const labels = new BigInt64Array(n);
      for (let i = 0; i < n; i++) labels[i] = BigInt(digit === null ? card.classes[i % card.classes.length] : digit);
      const feeds = { z: new ort.Tensor("float32", z, [n, card.z_dim]), label: new ort.Tensor("int64", labels, [n]) };
      const result = await session.run(feeds);
      const images = toUint8(result.image.data);
      const columns = digit === null ? Math.min(n, 8) : n;
      GankitGrid.draw(canvas, images, n, columns);
      last = { digit, seed, n, columns, z: Array.from(z), labels: Array.from(labels, Number) };
      window.gankitLast = last;
      canvas.dataset.state = "done";
      $("download").disabled = false;
      say(`${n} images, ${digit === null ? "samples" : "digit " + digit}, seed ${seed}`);
    } catch (err) {
      canvas.dataset.state = "error";
      say(String(err.message || err), true);
    }
  }

  $("draw").addEventListener("click", () => draw(null));
  $("download").addEventListener("click", () => {
    if (!last) return;
    const what = last.digit === null ? "samples" : "digit" + last.digit;
    GankitGrid.download(canvas, `gankit-${card.name}-${what}-seed${last.seed}.png`, 4);
  });

  (async () => {
    try {
      card = await (await fetch("model.json")).json();
      ort.env.wasm.numThreads = 1; // no cross-origin isolation needed from the static server
      ort.env.wasm.wasmPaths = new URL(card.ort_path, document.baseURI).href;
      session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
      const box = $("digits");
      if (card.label_mode === "none") {
        $("draw").hidden = false;
      } else {
        for (const digit of card.classes) {
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = String(digit);
          button.dataset.digit = String(digit);
          button.setAttribute("aria-pressed", "false");
          button.addEventListener("click", () => draw(digit));
          box.appendChild(button);
        }
      }
      say(`onnxruntime-web ${ort.env.versions ? ort.env.versions.web : ""} ready: pick a digit`);
      document.body.dataset.ready = "true";
    } catch (err) {
      say("cannot load the model: " + String(err.message || err), true);
    }
  })();
})();

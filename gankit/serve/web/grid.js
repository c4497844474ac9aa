// gankit grid: tile 28x28 grey images into a canvas, as gankit.images.make_grid does
// (2 pixels of black padding, `columns` images per row), and download a canvas as PNG.
// Shared by the page of `gankit serve` and the static page of `gankit web-export`.
"use strict";

const GankitGrid = (() => {
  const SIZE = 28;
  const PAD = 2;

  // images: Uint8Array of count*28*28 grey levels. The canvas gets the grid's own size
  // (one canvas pixel per image pixel) and is shown `zoom` times larger with square pixels
  // (CSS keeps it within the page's width).
  function draw(canvas, images, count, columns, zoom = 4) {
    const cols = Math.min(columns, count);
    const rows = Math.ceil(count / cols);
    const width = cols * (SIZE + PAD) + PAD;
    const height = rows * (SIZE + PAD) + PAD;
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const pixels = ctx.createImageData(width, height);
    const out = pixels.data;
    for (let i = 3; i < out.length; i += 4) out[i] = 255; // opaque black padding
    for (let k = 0; k < count; k++) {
      const top = PAD + Math.floor(k / cols) * (SIZE + PAD);
      const left = PAD + (k % cols) * (SIZE + PAD);
      for (let y = 0; y < SIZE; y++) {
        for (let x = 0; x < SIZE; x++) {
          const grey = images[k * SIZE * SIZE + y * SIZE + x];
          const at = ((top + y) * width + left + x) * 4;
          out[at] = grey;
          out[at + 1] = grey;
          out[at + 2] = grey;
        }
      }
    }
    ctx.putImageData(pixels, 0, 0);
    canvas.style.width = `${width * zoom}px`;
  }

  // The red channel of the whole canvas (the grid's grey levels), for tests and downloads.
  function grey(canvas) {
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const out = new Array(canvas.width * canvas.height);
    for (let i = 0; i < out.length; i++) out[i] = data[i * 4];
    return out;
  }

  // Save the canvas as a PNG, enlarged `scale` times with square pixels.
  function download(canvas, filename, scale) {
    const big = document.createElement("canvas");
    big.width = canvas.width * scale;
    big.height = canvas.height * scale;
    const ctx = big.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(canvas, 0, 0, big.width, big.height);
    big.toBlob((blob) => {
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = filename;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    }, "image/png");
  }

  return { draw, grey, download, SIZE, PAD };
})();

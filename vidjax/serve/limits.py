"""What the server refuses before it does any work: a body over the byte limit (counted as it
arrives, whatever Content-Length says), and in an upload, before any pixel is decoded, an
empty file, a file that is not an image, or an image of more pixels than the limit (a
decompression bomb). Each refusal is a 4xx with a one-line JSON `detail`.

(FastAPI 0.165 has a `max_body_size` of its own, but it answers a declared oversize with a
plain-text "Content Too Large" that neither is JSON nor names the limit.)"""
import io
import json
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException


class BodyTooLarge(HTTPException):
  """Raised from inside `receive`: an HTTPException, so FastAPI's body parsing passes it on
  as a 413 instead of turning it into a generic 400."""

  def __init__(self, limit: int):
    super().__init__(413, f'request body over the limit of {limit} bytes')


class BodyLimit:
  """ASGI middleware: 413 for a body over `max_bytes`, by Content-Length or by counting."""

  def __init__(self, app, max_bytes: int):
    self.app = app
    self.max_bytes = max_bytes

  async def __call__(self, scope, receive, send):
    if scope['type'] != 'http':
      return await self.app(scope, receive, send)
    declared = dict(scope.get('headers', ())).get(b'content-length')
    if declared is not None and not declared.isdigit():
      return await _send_json(send, 400, 'malformed Content-Length header')
    if declared is not None and int(declared) > self.max_bytes:
      return await _send_json(send, 413, BodyTooLarge(self.max_bytes).detail)
    received = 0
    started = False

    async def counted_receive():
      nonlocal received
      message = await receive()
      if message['type'] == 'http.request':
        received += len(message.get('body', b''))
        if received > self.max_bytes:
          raise BodyTooLarge(self.max_bytes)
      return message

    async def watched_send(message):
      nonlocal started
      started = started or message['type'] == 'http.response.start'
      await send(message)

    try:
      await self.app(scope, counted_receive, watched_send)
    except BodyTooLarge as error:
      if not started:
        await _send_json(send, 413, error.detail)


async def _send_json(send, status: int, detail: str):
  body = json.dumps({'detail': detail}).encode()
  await send({'type': 'http.response.start', 'status': status,
              'headers': [(b'content-type', b'application/json'),
                          (b'content-length', str(len(body)).encode()),
                          (b'connection', b'close')]})
  await send({'type': 'http.response.body', 'body': body})


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
  """An uploaded image as HxWx3 uint8, or an HTTPException (400, 413 or 415) saying why not.
  The size is checked from the header, before any pixel is decoded."""
  if not data:
    raise HTTPException(400, 'empty upload (0 bytes): expected an image file')
  with warnings.catch_warnings():
    warnings.simplefilter('error', Image.DecompressionBombWarning)
    try:
      image = Image.open(io.BytesIO(data))
      width, height = image.size
      if width * height > max_pixels:
        raise HTTPException(413, f'image of {width}x{height} pixels; at most {max_pixels} '
                            'pixels are accepted')
      image.load()
      return np.asarray(image.convert('RGB'))
    except HTTPException:
      raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
      status = 415 if isinstance(error, UnidentifiedImageError) else 413
      raise HTTPException(status, 'not an image Pillow can read (PNG, JPEG, GIF, BMP, TIFF, '
                          'WebP)' if status == 415 else f'image too large (at most {max_pixels} '
                          f'pixels are accepted): {error}') from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
      raise HTTPException(400, f'broken image file: {error}') from None

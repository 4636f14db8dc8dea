"""The JSON the server speaks: pydantic models of its requests and responses (they make the
OpenAPI page at /docs)."""
from typing import Literal

from pydantic import BaseModel, Field

Box = tuple[float, float, float, float]


class Hit(BaseModel):
  id: int = Field(description='The vector\'s faiss id; thumbnails and frames are fetched by it.')
  score: float = Field(description='Cosine similarity to the query (search), or the proposal '
                       'score (nearest: best cosine to a positive; probe: its probability).')
  video: str
  video_index: int
  frame: int
  timestamp: float = Field(description='Seconds from the start of the video.')
  kind: Literal['frame', 'grid', 'motion']
  box: Box = Field(description='x0, y0, x1, y1 in pixels of the frame as the index read it.')
  source: str
  thumbnail: str = Field(description='URL of the crop as the encoder saw it.')
  frame_url: str = Field(description='URL of the whole frame with the box drawn.')
  answers: dict[str, str] = Field(default_factory=dict,
                                  description='label -> the latest answer for this crop.')


class Histogram(BaseModel):
  edges: list[float]
  counts: list[int]
  of: int = Field(description='How many of the nearest vectors the histogram counts.')


class SearchResult(BaseModel):
  query_id: str = Field(description='Stands for this query as a seed of label proposals.')
  hits: list[Hit]
  histogram: Histogram
  milliseconds: float


class RegionQuery(BaseModel):
  id: int = Field(description='A vector id: its frame is the query (or the box of it).')
  box: Box | None = Field(None, description='A box of that frame; default the vector\'s own '
                          'region.')
  k: int = Field(20, ge=1, le=500)
  kinds: list[Literal['frame', 'grid', 'motion']] = []
  window: float = Field(2.0, ge=0)
  exclude_same_video: bool = False


class FrameQuery(BaseModel):
  video: int = Field(description='A video index (see /api/videos).')
  time: float = Field(ge=0, description='Seconds; the nearest frame is used.')
  box: Box | None = None
  k: int = Field(20, ge=1, le=500)
  kinds: list[Literal['frame', 'grid', 'motion']] = []
  window: float = Field(2.0, ge=0)
  exclude_same_video: bool = False


class Video(BaseModel):
  index: int
  name: str
  frames: int
  duration: float


class Health(BaseModel):
  status: Literal['ok']
  vectors: int
  dim: int
  factory: str
  nprobe: int
  encoder: str
  corpus: str
  labels: int
  answers: int


class LabelCounts(BaseModel):
  name: str
  created_by: str
  accept: int
  reject: int
  skip: int


class NewLabel(BaseModel):
  name: str = Field(description='1-64 letters, digits, spaces, _ - . (a folder name on export).')
  who: str = 'anonymous'


class Answer(BaseModel):
  id: int = Field(description='The vector id answered for.')
  label: str
  answer: Literal['accept', 'reject', 'skip']
  who: str = 'anonymous'


class Answered(BaseModel):
  seq: int
  label: LabelCounts


class Proposals(BaseModel):
  label: str
  method: Literal['nearest', 'probe']
  hits: list[Hit]


class ExportRequest(BaseModel):
  labels: list[str] | None = Field(None, description='Default: every label.')


class Exported(BaseModel):
  path: str
  written: dict[str, int]
  download: str

"""A deep ranker small enough to train in seconds on CPU: the settings the DNN tests share
with the feed-scoring tests (tests/models/ranking/, tests/models/feed/)."""

from models.ranking.dnn.config import DnnSettings

DNN = DnnSettings(
    user_buckets=500,
    author_buckets=200,
    post_buckets=1000,
    user_dim=4,
    author_dim=4,
    post_dim=4,
    cat_dim=4,
    topic_buckets=16,
    wide_buckets=2000,
    hidden=(32,),
    head_hidden=8,
    cross_layers=1,
    dropout=0.1,
    batch_size=256,
    shuffle_buffer=4096,
    read_rows=3000,
    epochs=4,
    patience=2,
    learning_rate=0.01,
    num_threads=1,
)

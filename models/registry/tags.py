"""Every MLflow tag the pipeline writes or searches by, and the values of the stage tag.

Runs: `feedrank.stage` says which step logged the run, `feedrank.ds` the last day its data
could use, `feedrank.profile` the settings profile; a ranker's run and its registered version
carry `feedrank.kind`; an ensemble's run names its members' runs; the gate tags each version
it decided on with `feedrank.promotion` and why.
"""

KIND_TAG = "feedrank.kind"  # a ranker's run and registered version: gbdt | dnn | ensemble
DS_TAG = "feedrank.ds"  # a run's last day of data
PROFILE_TAG = "feedrank.profile"  # the settings profile a run used
STAGE_TAG = "feedrank.stage"  # which step logged the run: one of the stages below
MEMBERS_TAG = "feedrank.members"  # an ensemble's run: its members' run ids, comma-joined
PROMOTION_TAG = "feedrank.promotion"  # a version the gate decided on: promoted or refused
PROMOTION_REASON_TAG = "feedrank.promotion_reason"  # the gate's reason, in words
# MLflow's own experiment tag: 3.x opens an experiment on its GenAI view unless told this.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"

RANKER_STAGE, RETRIEVAL_STAGE, FEEDS_STAGE = "ranker", "retrieval", "feeds"
AB_STAGE = "ab_test"  # the A/B report's run
RERANK_STAGE = "rerank_tuning"  # jobs/tune_rerank.py's run

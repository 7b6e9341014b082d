"""The deployment stage over the store: the canary (:mod:`.canary`), the post-promotion watch
(:mod:`.promotion_watch`) and an operator's control actions from the ops UI (:mod:`.operator_actions`)."""

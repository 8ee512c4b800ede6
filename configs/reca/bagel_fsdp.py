# BAGEL-7B-MoT RecA sharded with FSDP, as the authors train it (RecA
# repository BAGEL/train/fsdp_utils.py and the training script's
# --sharding_strategy HYBRID_SHARD --num_shard: shard each layer over the
# GPUs of a node, replicate across nodes; activation checkpointing of the
# MoT and SigLIP layers):
#   bash tools/dist_train.sh configs/reca/bagel_fsdp.py 8
# On one node this is full sharding over its GPUs. One FSDP unit per MoT
# layer; the frozen ViT, connector and VAE are not sharded. The
# understanding expert is sharded with its layer but takes no gradient or
# optimizer state (freeze_und). Checkpoints hold full state dicts (rank 0
# writes them). Shard groups of another size: strategy.num_shards=N (it
# must divide the number of GPUs).
# One 80 GB GPU instead: parameters, gradients and optimizer states on the
# host, a layer at a time on the GPU:
#   torchrun --nproc_per_node 1 tools/train.py CONFIG --launcher pytorch
#       --cfg-options strategy.model_wrapper.cpu_offload=True
# Check a setting first: tools/analysis_tools/estimate.py CONFIG --num-gpus N
# (docs/performance.md).
_base_ = ['./bagel.py']

# FSDP flattens each MoT layer into one tensor, which must have one dtype:
# the frozen understanding expert is float32 too (upstream shards float32
# parameters as well), not bfloat16 beside the float32 generation expert.
model = dict(umm=dict(weights_dtype='float32'))

runner_type = 'reca_toolkit.RecAFlexibleRunner'
strategy = dict(
    type='reca_toolkit.RecAFSDPStrategy',
    state_dict_cfg='full',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        sharding_strategy='HYBRID_SHARD',
        use_orig_params=True,
        auto_wrap_policy='reca_toolkit.transformer_layer_wrap_policy',
        ignored_modules=['umm.vit', 'umm.connector',
                         'umm.gen_tokenizer.vae']))
# Sample grids read the model outside FSDP; export from a checkpoint with
# tools/model_converters/export_hf.py instead.
custom_hooks = [dict(type='SkippedImagesHook')]

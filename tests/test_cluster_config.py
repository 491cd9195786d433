"""cluster.yaml against Ray's own cluster-launcher schema, plus the layout it promises."""

import yaml

from ray.autoscaler._private.util import prepare_config, validate_config


def test_cluster_yaml_is_valid_for_the_ray_launcher() -> None:
    config = yaml.safe_load(open("cluster.yaml"))
    validate_config(prepare_config(config))  # raises on a schema error
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"].get("GPU", 0) == 0  # no engines on the head
    assert nodes["gpu_pair"]["resources"]["GPU"] == 2  # one TP=2 engine actor per node
    assert nodes["sandbox_cpu"]["resources"]["sandbox"] > 0 and "GPU" not in nodes["sandbox_cpu"]["resources"]
    assert any("ray[default,serve]==" in cmd for cmd in config["setup_commands"])  # Ray version pinned


def test_the_schema_check_is_real() -> None:
    import pytest

    config = yaml.safe_load(open("cluster.yaml"))
    config["available_node_types"]["gpu_pair"]["resources"] = "two GPUs"
    with pytest.raises(Exception, match="resources|not of type"):
        validate_config(prepare_config(config))

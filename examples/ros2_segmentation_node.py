#!/usr/bin/env python3
"""A ROS 2 node: subscribe to an image topic, publish the class map and the overlay.

    ros2 run --prefix 'python3' ... or simply:
    python3 examples/ros2_segmentation_node.py --ros-args \
        -p model:=/opt/models/cifrenet_cityscapes_640x360_int8.engine \
        -p input_topic:=/camera/color/image_raw \
        -p mask_topic:=/camera/segmentation/mask -p overlay_topic:=/camera/segmentation/overlay

Thin on purpose: decoding, segmentation and encoding are
``cifrenet_edge.runtime.rosimg.segment_message`` (tested without ROS, no cv_bridge needed);
this file only wires topics and parameters. Publishes ``sensor_msgs/Image`` mono8 class ids
and bgr8 overlay with the input's header, so message_filters can pair them with the input.

Subscribes with the sensor-data QoS (best effort, depth 1): a segmenter slower than the
camera must process the newest frame, not a growing backlog. ``Segmenter.predict`` is
thread-safe, so a MultiThreadedExecutor may run several callbacks at once.
"""

import array

import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from cifrenet_edge import Segmenter
from cifrenet_edge.errors import CifreNetError, FrameError
from cifrenet_edge.runtime.rosimg import segment_message


class SegmentationNode(Node):
    def __init__(self) -> None:
        super().__init__("cifrenet_segmentation")
        model = self.declare_parameter("model", "").value
        input_topic = self.declare_parameter("input_topic", "/camera/image_raw").value
        mask_topic = self.declare_parameter("mask_topic", "/camera/segmentation/mask").value
        overlay_topic = self.declare_parameter(
            "overlay_topic", "/camera/segmentation/overlay"
        ).value
        device = self.declare_parameter("device", "auto").value
        self.alpha = float(self.declare_parameter("alpha", 0.5).value)
        self.publish_overlay = bool(self.declare_parameter("publish_overlay", True).value)
        compressed = bool(self.declare_parameter("compressed", False).value)
        if not model:
            raise SystemExit("set the model parameter: -p model:=/path/to/model.onnx")
        self.seg = Segmenter.open(model, device=device)  # warm-up happens here
        self.get_logger().info(f"{self.seg} ({self.seg.reason})")
        self.mask_pub = self.create_publisher(Image, mask_topic, 10)
        self.overlay_pub = self.create_publisher(Image, overlay_topic, 10)
        self.create_subscription(
            CompressedImage if compressed else Image,
            input_topic,
            self.on_image,
            qos_profile_sensor_data,
        )
        self.skipped = 0

    def _publish(self, publisher, header, fields) -> None:
        msg = Image(header=header)
        msg.height, msg.width = fields["height"], fields["width"]
        msg.encoding, msg.is_bigendian, msg.step = fields["encoding"], 0, fields["step"]
        msg.data = array.array("B", fields["data"].tobytes())  # the fast path of rclpy's setter
        publisher.publish(msg)

    def on_image(self, msg) -> None:
        want_overlay = self.publish_overlay and self.overlay_pub.get_subscription_count() > 0
        try:
            mask, overlay = segment_message(self.seg, msg, overlay=want_overlay, alpha=self.alpha)
        except FrameError as exc:  # one bad frame: skip it, keep the node alive
            self.skipped += 1
            self.get_logger().warning(f"skipped frame ({self.skipped} so far): {exc}")
            return
        except CifreNetError as exc:  # e.g. an encoding to fix upstream: say so, stay up
            self.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        self._publish(self.mask_pub, msg.header, mask)
        if overlay is not None:
            self._publish(self.overlay_pub, msg.header, overlay)

    def destroy_node(self) -> None:
        self.seg.close()
        super().destroy_node()


def main() -> None:
    rclpy.init()
    try:
        node = SegmentationNode()
    except CifreNetError as exc:  # bad model path/metadata, missing backend: one line, exit
        print(f"error: {exc}")
        rclpy.shutdown()
        raise SystemExit(2) from None
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
